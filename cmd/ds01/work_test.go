package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/registry"
)

// readRecord reads a project's record from the test's config directory.
func readRecord(t *testing.T, c *cliEnv, project string) deploy.Record {
	t.Helper()
	var r deploy.Record
	data, err := os.ReadFile(filepath.Join(c.config, "images", project+".json"))
	if err != nil {
		t.Fatalf("record of %s: %v", project, err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// Work saved with container retire --save is not lost: a directory named
// .wh.* in the container does not become a whiteout deleting a file of
// the image (finding 16); deploy --image refuses to replace the image
// holding it (9); and saving a container older than the project's image
// refuses to roll the project back (12).
func TestSavedWorkIsKept(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	bookworm := loadBase(t, d, testbed.Base(t, testbed.Bookworm), "keep-bookworm")
	bullseye := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "keep-bullseye")
	c := newCLI(t)
	name := testbed.Prefix(t)
	tag := "ds01-1722830498/" + name + ":latest"
	cname := name + "._.1722830498"
	testbed.RemoveImage(t, d, tag)
	removeContainer(t, d, cname)
	ws := filepath.Join(t.TempDir(), "ws")
	deployArgs := append(asBaker, "container", "deploy", name, "--workspace", ws, "--start", "--memlock", "8m")
	if out, code := c.run(append(asBaker, "image", "create", name, "--base", bookworm)...); code != 0 {
		t.Fatalf("image create: exit %d:\n%s", code, out)
	}
	if out, code := c.run(deployArgs...); code != 0 {
		t.Fatalf("deploy: exit %d:\n%s", code, out)
	}
	// fuse-overlayfs refuses a file named .wh.*, not a directory; kernel
	// overlayfs takes both. Either in a layer deletes what it names.
	r, err := d.Exec(ctx, cname, "1722830498:1722830498", "bash", "-lc", `set -e
echo kept > ~/work.txt
sudo mkdir /etc/.wh.debian_version
sudo touch /etc/.wh.hostname.ds01 2>/dev/null || true`)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("changes: %v %+v", err, r)
	}
	out, code := c.run(append(asBaker, "container", "retire", name, "--save")...)
	if code != 0 || !strings.Contains(out, "warning: left out /etc/.wh.debian_version: a name starting with .wh. is a deletion marker") {
		t.Fatalf("retire --save: exit %d, want a warning about /etc/.wh.debian_version:\n%s", code, out)
	}
	rr, err := d.Run(ctx, tag, "", "sh", "-c", "cat /etc/debian_version >/dev/null && echo base-file-kept; cat /home/h-baker/work.txt; ls -d /etc/.wh.* 2>/dev/null | wc -l")
	if err != nil || rr.Stdout != "base-file-kept\nkept\n0\n" {
		t.Fatalf("the saved image: %v\n%s%s\nwant /etc/debian_version kept, the work saved, no .wh.* entry", err, rr.Stdout, rr.Stderr)
	}
	saved, _ := d.ImageInspect(ctx, tag)
	if rec := readRecord(t, c, name); len(rec.Saved) != 1 || rec.ImageID != saved.ID {
		t.Fatalf("record after --save: %d saved layers, image %s; want 1, %s", len(rec.Saved), rec.ImageID, saved.ID)
	}

	// 9: deploying the name from an unlabelled image would replace the
	// image holding the saved work.
	out, code = c.run(append(asBaker, "container", "deploy", name, "--image", bullseye, "--workspace", ws)...)
	for _, want := range []string{"would replace your image " + tag, "holds work saved by container retire --save (from " + cname, "Nothing was changed", "--force"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("deploy --image over saved work: exit %d, want %q:\n%s", code, want, out)
		}
	}
	if now, _ := d.ImageInspect(ctx, tag); now.ID != saved.ID {
		t.Errorf("the refused deploy replaced %s: %s → %s", tag, saved.ID, now.ID)
	}
	if rec := readRecord(t, c, name); len(rec.Saved) != 1 || rec.ImageID != saved.ID {
		t.Errorf("the refused deploy changed the record: %+v", rec.Saved)
	}
	if _, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{}); err == nil {
		t.Error("the refused deploy left a container")
	}

	// 12: a container of the saved image, then the project rebuilt on
	// another base; saving the old container would roll the project back.
	if out, code := c.run(deployArgs...); code != 0 {
		t.Fatalf("deploy from the saved image: exit %d:\n%s", code, out)
	}
	if out, code := c.run(append(asBaker, "image", "create", name, "--base", bullseye, "--force")...); code != 0 {
		t.Fatalf("rebuild on bullseye: exit %d:\n%s", code, out)
	}
	rebuilt, _ := d.ImageInspect(ctx, tag)
	if _, err := d.Exec(ctx, cname, "1722830498:1722830498", "sh", "-c", "echo more > ~/more.txt"); err != nil {
		t.Fatal(err)
	}
	out, code = c.run(append(asBaker, "container", "retire", name, "--save")...)
	if code != 1 || !strings.Contains(out, "is now "+rebuilt.ID) || !strings.Contains(out, "Nothing was saved and the container was kept") {
		t.Errorf("retire --save of a container older than the image: exit %d:\n%s", code, out)
	}
	if now, _ := d.ImageInspect(ctx, tag); now.ID != rebuilt.ID || now.Config.Labels["ds01.base"] != bullseye {
		t.Errorf("%s rolled back to %s (base %s); want %s on %s", tag, now.ID, now.Config.Labels["ds01.base"], rebuilt.ID, bullseye)
	}
	if rec := readRecord(t, c, name); rec.ImageID != rebuilt.ID || rec.Base.Ref != bullseye {
		t.Errorf("record: image %s on %s; want %s on %s", rec.ImageID, rec.Base.Ref, rebuilt.ID, bullseye)
	}
	if _, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("the refused retire removed the container: %v", err)
	}
}

// projectImages lists every image, tagged or not, that ds01 made for a
// project (its ds01.project label), and every tag of the project.
func projectImages(t *testing.T, d *deploy.Daemon, project string) []string {
	t.Helper()
	var out []string
	for _, f := range []client.Filters{
		make(client.Filters).Add("label", "ds01.project="+project),
		make(client.Filters).Add("reference", "*/"+project),
	} {
		res, err := d.ImageList(context.Background(), client.ImageListOptions{All: true, Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range res.Items {
			if e := im.ID + " " + strings.Join(im.RepoTags, ","); !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out
}

// removeProjectImages removes, when the test ends, whatever a test's runs
// left for the project.
func removeProjectImages(t *testing.T, d *deploy.Daemon, project string) {
	t.Cleanup(func() {
		for _, im := range projectImages(t, d, project) {
			id, _, _ := strings.Cut(im, " ")
			d.ImageRemove(context.Background(), id, client.ImageRemoveOptions{Force: true})
		}
	})
}

// bigSkelBase is bullseye with n incompressible bytes in /etc/skel, so
// that the user layer, which copies the skeleton, takes a while to load.
func bigSkelBase(t *testing.T, d *deploy.Daemon, n int) string {
	t.Helper()
	entries := []layers.Entry{{Path: "etc", Type: '5', Mode: 0o755}, {Path: "etc/skel", Type: '5', Mode: 0o755}}
	for i := 0; n > 0; i++ {
		data := make([]byte, min(n, 15<<20)) // ds01 reads base files up to 16 MiB each
		rand.Read(data)
		n -= len(data)
		entries = append(entries, layers.Entry{Path: fmt.Sprintf("etc/skel/weights-%d.bin", i), Type: '0', Mode: 0o644, Data: data})
	}
	var b bytes.Buffer
	if err := layers.Write(&b, entries); err != nil {
		t.Fatal(err)
	}
	bullseye, err := layers.FromFile(mustTar(t, testbed.Bullseye))
	if err != nil {
		t.Fatal(err)
	}
	img, err := registry.ImageFromLayers("bigskel", bullseye, layers.FromBytes(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return loadBase(t, d, img, "bigskel")
}

// Ctrl-C during the load of the real binary leaves nothing half-made: no
// image of the project, tagged or not, no record, also seconds after ds01
// exited; or, when the signal came too late, the whole image and its
// record (finding 11).
func TestCreateInterrupted(t *testing.T) {
	d := testbed.Docker(t)
	base := bigSkelBase(t, d, 56<<20) // /etc is read whole up to 64 MiB
	interrupted := 0
	for _, delay := range []time.Duration{0, 200 * time.Millisecond, 800 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			c := newCLI(t)
			project := testbed.Prefix(t)
			removeProjectImages(t, d, project)
			cmd := exec.Command(binary(t), append(asBaker, "image", "create", project, "--base", base, "-v")...)
			cmd.Env = append(os.Environ(), "DS01_CONFIG="+c.config, "DS01_CACHE="+c.cache)
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if strings.HasPrefix(sc.Text(), "load path:") {
					time.Sleep(delay)
					cmd.Process.Signal(syscall.SIGINT)
				}
			}
			err := cmd.Wait()
			all := out.String() + errOut.String()
			if err == nil {
				// Too late to interrupt: then all of it.
				ins, ierr := d.ImageInspect(context.Background(), "ds01-1722830498/"+project+":latest")
				if rec := readRecord(t, c, project); ierr != nil || rec.ImageID != ins.ID {
					t.Fatalf("finished after SIGINT, but image %v and record %s disagree:\n%s", ierr, rec.ImageID, all)
				}
				t.Logf("SIGINT %s after the load began came too late: the image and its record are whole", delay)
				return
			}
			if !strings.Contains(all, "interrupted: the load of ds01-1722830498/"+project+":latest was stopped") {
				t.Fatalf("exit %v, not for the interruption:\n%s", err, all)
			}
			interrupted++
			for _, wait := range []time.Duration{0, 5 * time.Second} {
				time.Sleep(wait)
				if left := projectImages(t, d, project); len(left) > 0 {
					t.Errorf("%s after ds01 exited: images left %v", wait, left)
				}
			}
			if ents, _ := os.ReadDir(filepath.Join(c.config, "images")); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasSuffix(e.Name(), ".json") }) {
				t.Errorf("record left: %v", ents)
			}
			t.Logf("SIGINT %s after the load began: %s", delay, strings.TrimSpace(errOut.String()))
		})
	}
	if interrupted == 0 {
		t.Error("no run was interrupted: the test showed nothing")
	}
}

// Two image create --force of one project on different bases at once:
// the per-project lock makes them one after the other, so the project
// ends with one image, its record names it, and each run reports what it
// did: the second one says which image it replaced (finding 11).
func TestConcurrentCreate(t *testing.T) {
	d := testbed.Docker(t)
	bases := []string{
		loadBase(t, d, testbed.Base(t, testbed.Bullseye), "race-bullseye"),
		loadBase(t, d, testbed.Base(t, testbed.Bookworm), "race-bookworm"),
	}
	c := newCLI(t)
	project := testbed.Prefix(t)
	tag := "ds01-1722830498/" + project + ":latest"
	removeProjectImages(t, d, project)
	type run struct {
		out  string
		code int
		id   string
	}
	runs := make([]run, len(bases))
	var wg sync.WaitGroup
	for i, b := range bases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, code := c.run(append(asBaker, "image", "create", project, "--base", b, "--force")...)
			runs[i] = run{out: out, code: code}
			if m := idRE.FindStringSubmatch(out); m != nil {
				runs[i].id = m[1]
			}
		}()
	}
	wg.Wait()
	ins, err := d.ImageInspect(context.Background(), tag)
	if err != nil {
		t.Fatalf("no image after two creates: %v\n%s\n%s", err, runs[0].out, runs[1].out)
	}
	rec := readRecord(t, c, project)
	if rec.ImageID != ins.ID || rec.Base.Ref != ins.Config.Labels["ds01.base"] {
		t.Errorf("record: image %s on %s; the image is %s on %s", rec.ImageID, rec.Base.Ref, ins.ID, ins.Config.Labels["ds01.base"])
	}
	last, first := -1, -1
	for i, r := range runs {
		if r.code != 0 || r.id == "" {
			t.Fatalf("create on %s: exit %d:\n%s", bases[i], r.code, r.out)
		}
		if r.id == ins.ID {
			last = i
		} else {
			first = i
		}
	}
	if last < 0 || first < 0 {
		t.Fatalf("the image is %s; the runs reported %s and %s", ins.ID, runs[0].id, runs[1].id)
	}
	if !strings.Contains(runs[last].out, "replaced "+runs[first].id) {
		t.Errorf("the later run does not say it replaced %s:\n%s", runs[first].id, runs[last].out)
	}
	if !strings.Contains(runs[0].out+runs[1].out, "waiting for another ds01 working on project "+project) {
		t.Logf("the runs did not overlap (no wait reported)")
	} else {
		t.Logf("one run waited for the other's lock")
	}
	if left := projectImages(t, d, project); len(left) != 1 {
		t.Errorf("images of the project: %v; want only %s", left, ins.ID)
	}
}
