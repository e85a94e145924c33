package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/registry"
)

// readRecord reads a project's record from the test's config directory.
func readRecord(t *testing.T, c *cliEnv, project string) record.Record {
	t.Helper()
	var r record.Record
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
	deployArgs := append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--workspace", ws, "--start", "--memlock", "8m")
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
	out, code = c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--image", bullseye, "--workspace", ws)...)
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

// mlcLabels parses `docker ps --format {{.Labels}}` as AIME's mlc.py
// does: split on ',', then each on the first '='; a piece without '='
// is the ValueError that breaks `mlc list` for every container.
func mlcLabels(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("ValueError: not enough values to unpack (expected 2, got 1): %q", kv)
		}
		m[k] = v
	}
	return m, nil
}

// No label value ds01 writes holds a comma (AIME's mlc list splits the
// labels on ','), and container list still shows the GPUs and workspace
// as the user gave them (finding 18); a login shell has ~/.local/bin on
// PATH once.
func TestLabelsWithoutCommas(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	base := loadBase(t, d, testbed.Base(t, testbed.Bookworm), "mlc")
	c := newCLI(t)
	name := testbed.Prefix(t)
	tag := "ds01-1722830498/" + name + ":latest"
	cname := name + "._.1722830498"
	testbed.RemoveImage(t, d, tag)
	removeContainer(t, d, cname)
	ws := filepath.Join(t.TempDir(), "a,b")
	if out, code := c.run(append(asBaker, "image", "create", name, "--base", base)...); code != 0 {
		t.Fatalf("image create: exit %d:\n%s", code, out)
	}
	if out, code := c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--gpus", "device=0,1", "--workspace", ws)...); code != 0 {
		t.Fatalf("deploy: exit %d:\n%s", code, out)
	}
	ci, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range ci.Container.Config.Labels {
		if strings.Contains(v, ",") && (strings.HasPrefix(k, "ds01.") || strings.HasPrefix(k, "aime.mlc")) {
			t.Errorf("label %s=%q has a comma", k, v)
		}
	}
	if g := ci.Container.Config.Labels["aime.mlc.GPUS"]; g != "device=0%2C1" {
		t.Errorf("aime.mlc.GPUS = %q; want device=0%%2C1", g)
	}
	// As mlc list reads them, through the docker CLI.
	ps, err := exec.Command("docker", "ps", "-a", "--filter", "name=^"+cname+"$", "--format", "{{.Labels}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	labels, err := mlcLabels(strings.TrimSpace(string(ps)))
	if err != nil {
		t.Fatalf("mlc would fail on %s: %v\n%s", cname, err, ps)
	}
	if labels["aime.mlc.NAME"] != name || labels["aime.mlc.USER"] != "h.baker@hertie-school.lan" {
		t.Errorf("mlc reads %v", labels)
	}
	out, code := c.run(append(asBaker, "container", "list", "--json")...)
	var list []deploy.ContainerInfo
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil {
		t.Fatalf("container list: exit %d %v:\n%s", code, err, out)
	}
	if i := slices.IndexFunc(list, func(c deploy.ContainerInfo) bool { return c.Name == cname }); i < 0 || list[i].GPUs != "device=0,1" || list[i].Workspace != ws {
		t.Errorf("container list: %+v; want GPUs device=0,1 and workspace %s", list, ws)
	}
	if out, _ := c.run(append(asBaker, "container", "list")...); !strings.Contains(out, "device=0,1") {
		t.Errorf("container list does not show device=0,1:\n%s", out)
	}

	// A login shell, as container open gives, and an interactive one.
	r, err := d.Run(ctx, tag, "", "bash", "-lc", `echo "$PATH"; bash -ic 'echo "$PATH"' 2>/dev/null`)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("%v %+v", err, r)
	}
	for _, p := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if n := strings.Count(":"+p+":", ":/home/h-baker/.local/bin:"); n != 1 {
			t.Errorf("PATH %s has ~/.local/bin %d times; want once", p, n)
		}
	}
}

func TestDemoIdentity(t *testing.T) {
	for _, tc := range []struct {
		name  string
		taken []uint32
		want  uint32
	}{
		{"free", nil, demoID},
		{"a real user has it", []uint32{demoID}, demoID + 1},
		{"and the next group", []uint32{demoID, demoID + 1}, demoID + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			id, err := demoIdentity(&b, func(u uint32) bool { return slices.Contains(tc.taken, u) })
			if err != nil || id.UID != tc.want || id.GID != tc.want || id.Login != demoLogin {
				t.Fatalf("%+v %v; want UID/GID %d", id, err, tc.want)
			}
		})
	}
	if _, err := demoIdentity(io.Discard, func(uint32) bool { return true }); err == nil || !strings.Contains(err.Error(), "--user LOGIN") {
		t.Errorf("every ID taken: %v", err)
	}
}

// On a server where the demo's fixed UID is a real user, the demo as root
// acts for a UID no account has and leaves that user's image alone
// (finding 17). DS01_DEMO_UID puts the fixed UID on a user the test made.
func TestDemoAvoidsRealUser(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	u := testbed.NewUser(t, testbed.HomesDir(t, testbed.HardenedHomes))
	project := testbed.Prefix(t)
	theirs := fmt.Sprintf("ds01-%d/%s:latest", u.UID, project)
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "theirs")
	if _, err := d.ImageTag(ctx, client.ImageTagOptions{Source: base, Target: theirs}); err != nil {
		t.Fatal(err)
	}
	testbed.RemoveImage(t, d, theirs)
	before, _ := d.ImageInspect(ctx, theirs)
	baseTag := "ds01-base/debian-bookworm:" + registry.DebianCreated.Format("20060102")
	if _, err := d.ImageInspect(ctx, baseTag); err != nil {
		testbed.RemoveImage(t, d, baseTag) // the demo loads it; the test removes it
	}
	// The demo's Debian base, from the test bed's cache.
	testbed.Base(t, testbed.Bookworm)
	cache := t.TempDir()
	if err := os.Symlink(filepath.Dir(mustTar(t, testbed.Bookworm)), filepath.Join(cache, "debian")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "demo", "--project", project)
	cmd.Env = append(os.Environ(), "DS01_CACHE="+cache, fmt.Sprintf("DS01_DEMO_UID=%d", u.UID))
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	m := regexp.MustCompile(`acting for h\.baker@hertie-school\.lan \(UID/GID (\d+); (\d+) belongs to an account or group of this host\)`).FindStringSubmatch(out)
	if err != nil || m == nil || m[2] != strconv.Itoa(int(u.UID)) {
		t.Fatalf("demo: %v, want it to step past UID %d:\n%s", err, u.UID, out)
	}
	used, _ := strconv.Atoi(m[1])
	testbed.RemoveImage(t, d, fmt.Sprintf("ds01-%d/%s:latest", used, project))
	if idTaken(uint32(used)) {
		t.Errorf("the demo acted for UID %d, which an account or group of this host has", used)
	}
	if after, err := d.ImageInspect(ctx, theirs); err != nil || after.ID != before.ID {
		t.Errorf("the user's image %s was touched: %v", theirs, err)
	}
	if !strings.Contains(out, fmt.Sprintf("uid=%d(h-baker)", used)) {
		t.Errorf("inside the image the demo user is not UID %d:\n%s", used, out)
	}
}

// image prune removes the package images no image is built on; acting
// for a user it touches only those in that user's cache; root sees all.
func TestImagePrune(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	bullseye, err := layers.FromFile(mustTar(t, testbed.Bullseye))
	if err != nil {
		t.Fatal(err)
	}
	small := func(name string) v1.Layer {
		var b bytes.Buffer
		if err := layers.Write(&b, []layers.Entry{{Path: name, Type: '0', Mode: 0o644, Data: []byte(name)}}); err != nil {
			t.Fatal(err)
		}
		return layers.FromBytes(b.Bytes())
	}
	prefix := testbed.Prefix(t)
	load := func(tag string, ls ...v1.Layer) {
		img, err := registry.ImageFromLayers(tag, append([]v1.Layer{bullseye}, ls...)...)
		if err != nil {
			t.Fatal(err)
		}
		testbed.RemoveImage(t, d, tag)
		if _, err := d.Load(ctx, img, tag, nil); err != nil {
			t.Fatal(err)
		}
	}
	used, mine, theirs := prefix+"a", prefix+"b", prefix+"c"
	pkg := func(k string) string { return "ds01-packages/" + k + ":latest" }
	load(pkg(used), small("a"))
	load(prefix+"/user:latest", small("a"), small("user"))
	load(pkg(mine), small("b"))
	load(pkg(theirs), small("c"))
	exists := func(tag string) bool { _, err := d.ImageInspect(ctx, tag); return err == nil }

	c := newCLI(t)
	if err := os.MkdirAll(filepath.Join(c.cache, "packages"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(c.cache, "packages", "req-"+mine+"0123456789.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(c.cache, "packages", "req-"+used+"0123456789.json"), []byte("{}"), 0o644)
	out, code := c.run("--user", "alice", "--uid", "20000001", "--gid", "20000001", "image", "prune")
	if code != 0 || !strings.Contains(out, "removed "+pkg(mine)) || !strings.Contains(out, "kept "+pkg(used)+": used by "+prefix+"/user:latest") || strings.Contains(out, theirs) {
		t.Errorf("prune for a user: exit %d:\n%s", code, out)
	}
	if exists(pkg(mine)) || !exists(pkg(used)) || !exists(pkg(theirs)) {
		t.Errorf("after a user's prune: %s %v (want gone), %s %v, %s %v (want kept)", mine, exists(pkg(mine)), used, exists(pkg(used)), theirs, exists(pkg(theirs)))
	}
	// Root sees every package image; the test removes only its own.
	out, code = c.run("image", "prune", "--dry-run")
	if code != 0 || !strings.Contains(out, "would remove "+pkg(theirs)) || !strings.Contains(out, "kept "+pkg(used)) || !exists(pkg(theirs)) {
		t.Errorf("root's dry run: exit %d:\n%s", code, out)
	}
	out, code = c.run("image", "prune", used, theirs)
	if code != 0 || exists(pkg(theirs)) || !exists(pkg(used)) || !strings.Contains(out, "removed 1 package images") {
		t.Errorf("root's prune: exit %d:\n%s", code, out)
	}
}
