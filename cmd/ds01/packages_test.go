package main

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/internal/testbed"
)

// layerPaths lists the entries of a cached package layer.
func layerPaths(t *testing.T, cache, diffID string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(cache, "packages", "layers", strings.TrimPrefix(diffID, "sha256:")+".tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name)
	}
}

// installContainers counts the install containers the daemon created
// since t: how a test knows that no install ran.
func installContainers(t *testing.T, since time.Time) int {
	t.Helper()
	out, err := exec.Command("docker", "events", "--since", since.Format(time.RFC3339Nano), "--until", time.Now().Format(time.RFC3339Nano),
		"--filter", "type=container", "--filter", "event=create", "--filter", "label=ds01.purpose=install-packages", "--format", "{{.ID}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Fields(string(out)))
}

// Packages from a local wheel directory (no PyPI here) and a real Debian
// package, in one shared layer below the user's.
func TestImagePackages(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	base := loadBase(t, d, testbed.Base(t, testbed.Bookworm), "pkgbase")
	// The shared base + packages images this test makes go when it ends;
	// any that were there before stay.
	had := map[string]bool{}
	list, _ := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", "ds01-packages/*")})
	for _, im := range list.Items {
		for _, tag := range im.RepoTags {
			had[tag] = true
		}
	}
	t.Cleanup(func() {
		list, _ := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", "ds01-packages/*")})
		for _, im := range list.Items {
			for _, tag := range im.RepoTags {
				if !had[tag] {
					d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true})
				}
			}
		}
	})
	// A copy, moved away below: the shared one is other tests' too.
	wheels := copyWheels(t, testbed.Wheels(t, d, "../../testdata/pypkgs"), 0o755)
	c := newCLI(t)
	project := testbed.Prefix(t)
	tag := "ds01-1722830498/" + project + ":latest"
	testbed.RemoveImage(t, d, tag)
	pkgArgs := []string{"--base", base, "--pip", "ds01-greet", "--wheels", wheels, "--no-index", "--apt", "hello"}

	out, code := c.run(append(append(asBaker, "image", "create", project), pkgArgs...)...)
	if code != 0 || !strings.Contains(out, "installed in a throwaway container") {
		t.Fatalf("create with packages: exit %d:\n%s", code, out)
	}
	ins, err := d.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	layer := ins.Config.Labels["ds01.packages.layer"]
	if !strings.Contains(ins.Config.Labels["ds01.packages.pip"], "ds01-greet==0.3.0") || !strings.Contains(ins.Config.Labels["ds01.packages.pip"], "ds01-words==1.2.0") ||
		!strings.Contains(ins.Config.Labels["ds01.packages.apt"], "hello=") || layer == "" {
		t.Fatalf("labels %v", ins.Config.Labels)
	}
	// Layer order: base, packages, user.
	baseIns, _ := d.ImageInspect(ctx, base)
	if n := len(ins.RootFS.Layers); n != len(baseIns.RootFS.Layers)+2 || ins.RootFS.Layers[n-2] != layer {
		t.Errorf("layers %v; want the base's, then %s, then the user's", ins.RootFS.Layers, layer)
	}
	for _, p := range layerPaths(t, c.cache, layer) {
		for _, bad := range []string{"var/lib/apt/lists/", "var/cache/apt/", "tmp/", "var/log/", "root/.cache/"} {
			if strings.HasPrefix(p, bad) && p != bad {
				t.Errorf("package layer holds %s", p)
			}
		}
	}

	// As the user, in a container of the image.
	r, err := d.Run(ctx, tag, "", "bash", "-lc", `python3 -c 'import ds01_greet, ds01_words; print(ds01_words.__name__)' && ds01-greet && dpkg -s hello | grep -c '^Status: install ok installed' && stat -c %s /var/log/lastlog && id -un && echo "$PYTHONUNBUFFERED $HF_HOME"`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ds01_words\nhello from a ds01 package layer\n1\n0\nh-baker\n1 /workspace/.cache/huggingface\n"; r.Stdout != want {
		t.Errorf("inside:\n%s%s\nwant:\n%s", r.Stdout, r.Stderr, want)
	}

	// A second user with the same packages: the same layer, no install.
	since := time.Now()
	alice := []string{"--user", "alice", "--uid", "20000000", "--gid", "20000000"}
	testbed.RemoveImage(t, d, "ds01-20000000/"+project+":latest")
	// Her own records (her home), the server's shared cache.
	ca := &cliEnv{t: t, config: t.TempDir(), cache: c.cache}
	out, code = ca.run(append(append(alice, "image", "create", project), pkgArgs...)...)
	if code != 0 || !strings.Contains(out, "shared layer reused, nothing installed") {
		t.Fatalf("second user: exit %d:\n%s", code, out)
	}
	ins2, err := d.ImageInspect(ctx, "ds01-20000000/"+project+":latest")
	if err != nil || ins2.Config.Labels["ds01.packages.layer"] != layer {
		t.Errorf("second user's package layer %q; want %s (%v)", ins2.Config.Labels["ds01.packages.layer"], layer, err)
	}
	if n := installContainers(t, since); n != 0 {
		t.Errorf("%d install containers for the second user; want none", n)
	}

	// Offline rebuild with the wheel directory gone: the same layer.
	if err := os.Rename(wheels, wheels+".away"); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(wheels+".away", wheels)
	out, code = c.run(append(asBaker, "image", "update", project, "--offline")...)
	if code != 0 {
		t.Fatalf("update --offline: exit %d:\n%s", code, out)
	}
	ins3, _ := d.ImageInspect(ctx, tag)
	if got := ins3.Config.Labels["ds01.packages.layer"]; got != layer {
		t.Errorf("offline rebuild's package layer %s; want %s\n%s", got, layer, out)
	}
	os.Rename(wheels+".away", wheels)

	// The jupyter preset (here from an administrator's presets file, as
	// there is no PyPI): a kernel for the project and a server that
	// listens inside the container only.
	presets := filepath.Join(t.TempDir(), "presets.conf")
	os.WriteFile(presets, []byte("jupyter: ds01-greet\n"), 0o644)
	jp := testbed.Prefix(t)
	testbed.RemoveImage(t, d, "ds01-1722830498/"+jp+":latest")
	out, code = c.run(append(asBaker, "image", "create", jp, "--base", base, "--preset", "jupyter", "--presets", presets, "--wheels", wheels, "--no-index")...)
	if code != 0 {
		t.Fatalf("jupyter preset: exit %d:\n%s", code, out)
	}
	r, err = d.Run(ctx, "ds01-1722830498/"+jp+":latest", "", "bash", "-lc",
		`grep -c '"display_name": "Python 3 (`+jp+`)"' ~/.local/share/jupyter/kernels/`+jp+`/kernel.json; grep -c '^c.ServerApp.ip = "127.0.0.1"' ~/.jupyter/jupyter_server_config.py; stat -c %U ~/.jupyter ~/.local/share/jupyter`)
	if err != nil || r.Stdout != "1\n1\nh-baker\nh-baker\n" {
		t.Errorf("jupyter files: %v\n%s%s", err, r.Stdout, r.Stderr)
	}

	// Bad input: clear message, non-zero exit, nothing left behind.
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no such package", []string{"--pip", "ds01-nonexistent", "--wheels", wheels, "--no-index"}, 1, "installing packages failed"},
		{"version conflict", []string{"--pip", "ds01-greet", "--pip", "ds01-words<1.0", "--wheels", wheels, "--no-index"}, 1, "installing packages failed"},
		{"failing apt install", []string{"--apt", "ds01-no-such-deb"}, 1, "Unable to locate package ds01-no-such-deb"},
		{"missing requirements file", []string{"--requirements", "/nonexistent/requirements.txt"}, 2, "--requirements"},
		{"bad apt name", []string{"--apt", "Bad Name"}, 2, "not a Debian package name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testbed.Prefix(t)
			layersBefore, _ := os.ReadDir(filepath.Join(c.cache, "packages", "layers"))
			out, code := c.run(append(append(asBaker, "image", "create", p, "--base", base), tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d:\n%s\nwant exit %d and %q", code, out, tc.code, tc.want)
			}
			assertNothingLeft(t, d, c, p, len(layersBefore))
		})
	}

	// Ctrl-C during the install.
	t.Run("interrupted", func(t *testing.T) {
		p := testbed.Prefix(t)
		layersBefore, _ := os.ReadDir(filepath.Join(c.cache, "packages", "layers"))
		cmd := exec.Command(binary(t), append(asBaker, "image", "create", p, "--base", base, "--apt", "cowsay", "-v")...)
		cmd.Env = append(os.Environ(), "DS01_CONFIG="+c.config, "DS01_CACHE="+c.cache)
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until apt is at work, then interrupt.
		buf := make([]byte, 4096)
		seen := ""
		for !strings.Contains(seen, "Reading package lists") && !strings.Contains(seen, "Get:") {
			n, err := stdout.Read(buf)
			if err != nil {
				break
			}
			seen += string(buf[:n])
		}
		// While it works, the install container names the image it is
		// for, so that an administrator's docker ps tells whose it is.
		running, err := d.ContainerList(ctx, client.ContainerListOptions{Filters: client.Filters{}.Add("label", label.For+"=ds01-1722830498/"+p+":latest")})
		if err != nil || len(running.Items) != 1 || running.Items[0].Labels[label.Purpose] != "install-packages" {
			t.Errorf("install containers for %s while it runs: %v %+v", p, err, running.Items)
		}
		cmd.Process.Signal(syscall.SIGINT)
		rest, _ := io.ReadAll(stdout)
		err = cmd.Wait()
		if err == nil {
			t.Fatalf("an interrupted create succeeded:\n%s%s", seen, rest)
		}
		assertNothingLeft(t, d, c, p, len(layersBefore))
	})
}

func assertNothingLeft(t *testing.T, d interface {
	ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error)
	ImageList(context.Context, client.ImageListOptions) (client.ImageListResult, error)
}, c *cliEnv, project string, layersBefore int) {
	t.Helper()
	ctx := context.Background()
	imgs, _ := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", "*/"+project)})
	if len(imgs.Items) > 0 {
		t.Errorf("left image %v", imgs.Items[0].RepoTags)
	}
	if left := testbed.LeftContainers(t, d, project); len(left) > 0 {
		t.Errorf("left containers %v", left)
	}
	if after, _ := os.ReadDir(filepath.Join(c.cache, "packages", "layers")); len(after) != layersBefore {
		t.Errorf("package layers in the cache: %d before, %d after", layersBefore, len(after))
	}
	if ents, _ := os.ReadDir(filepath.Join(c.config, "images")); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), project) {
				t.Errorf("left record %s", e.Name())
			}
		}
	}
}
