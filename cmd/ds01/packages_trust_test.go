package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
)

// sudoWrapper is what a sudoers rule names in these tests: the built
// binary with a cache of the test's own (sudo's env_reset drops
// DS01_CACHE), so that a test never writes root's real cache.
func sudoWrapper(t *testing.T, cache string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ds01test-sudo-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, "ds01")
	script := fmt.Sprintf("#!/bin/sh\nexec env DS01_CACHE=%s %s \"$@\"\n", cache, testbed.Binary(t))
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// publicDir is a directory under /tmp every user may read, with mode.
func publicDir(t *testing.T, prefix string, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, mode)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// copyWheels copies the test wheels into a directory with mode.
func copyWheels(t *testing.T, src string, mode os.FileMode) string {
	t.Helper()
	dst := publicDir(t, "ds01test-wheels-", mode)
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644)
	}
	return dst
}

// trojanWheel is a valid wheel of ds01-words 99.0, a version no honest
// index has, so that installing it shows who planted it.
func trojanWheel(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	// In a fixed order (not a map's): the test finds the planted copy by
	// its bytes, so every call must give the same ones.
	for _, f := range [][2]string{
		{"ds01_words/__init__.py", "TROJAN = True\n"},
		{"ds01_words-99.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: ds01-words\nVersion: 99.0\n"},
		{"ds01_words-99.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: ds01test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
		{"ds01_words-99.0.dist-info/RECORD", "ds01_words/__init__.py,,\nds01_words-99.0.dist-info/METADATA,,\nds01_words-99.0.dist-info/WHEEL,,\nds01_words-99.0.dist-info/RECORD,,\n"},
	} {
		w, _ := z.Create(f[0])
		io.WriteString(w, f[1])
	}
	z.Close()
	return b.Bytes()
}

// hostilePython is the python3 of a hostile base: after each real run
// it plants a setuid-root shell and a trojan wheel among ds01's results
// and tries to write ds01's inputs; with /opt/evil/link it also replaces
// ds01's reports with links to /etc/shadow.
const hostilePython = `#!/bin/sh
/usr/bin/python3 "$@"; rc=$?
mkdir -p /ds01/out/wheels
cp /bin/bash /ds01/out/wheels/sh && chmod 4755 /ds01/out/wheels/sh
cp /opt/evil/ds01_words-99.0-py3-none-any.whl /ds01/out/wheels/ && chmod 6755 /ds01/out/wheels/ds01_words-99.0-py3-none-any.whl
cp /bin/bash /ds01/in/wheels/sh 2>/dev/null && chmod 4755 /ds01/in/wheels/sh
if [ -e /opt/evil/link ]; then
  ln -sf /etc/shadow /ds01/out/apt.txt
  ln -sf /etc/shadow /ds01/out/pip.json
fi
exit $rc
`

// hostileBase builds base plus hostilePython (docker build: crafting a
// hostile base is not what ds01 does), removed when the test ends.
func hostileBase(t *testing.T, d *deploy.Daemon, base string, link bool) string {
	t.Helper()
	dir := t.TempDir()
	// A file of its own makes each base new to the daemon's build cache,
	// so no package layer of an earlier run's twin is reused.
	df := "FROM " + base + "\nCOPY python3 /usr/local/bin/python3\nCOPY trojan.whl /opt/evil/ds01_words-99.0-py3-none-any.whl\nCOPY id /opt/evil/id\n"
	if link {
		df += "COPY python3 /opt/evil/link\n"
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644)
	os.WriteFile(filepath.Join(dir, "python3"), []byte(hostilePython), 0o755)
	os.WriteFile(filepath.Join(dir, "trojan.whl"), trojanWheel(t), 0o644)
	tag := testbed.Prefix(t) + "/hostile:latest"
	os.WriteFile(filepath.Join(dir, "id"), []byte(tag), 0o644)
	testbed.RemoveImage(t, d, tag)
	cmd := exec.Command("docker", "build", "-q", "-t", tag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	return tag
}

// cleanupPackageImages removes the ds01-packages/* images made from now
// on, when the test ends; those there before stay.
func cleanupPackageImages(t *testing.T, d *deploy.Daemon) {
	ctx := context.Background()
	list := func() map[string]bool {
		tags := map[string]bool{}
		l, _ := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", "ds01-packages/*")})
		for _, im := range l.Items {
			for _, tag := range im.RepoTags {
				tags[tag] = true
			}
		}
		return tags
	}
	had := list()
	t.Cleanup(func() {
		for tag := range list() {
			if !had[tag] {
				d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true})
			}
		}
	})
}

// cacheFiles lists every file of a cache with its mode.
func cacheFiles(t *testing.T, cache string) map[string]fs.FileMode {
	files := map[string]fs.FileMode{}
	filepath.WalkDir(cache, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				files[p] = fi.Mode()
			}
		}
		return nil
	})
	return files
}

// A base runs its own code as root in the install container. Two real
// users, each through a sudoers rule for ds01, share root's cache: the
// first builds on a hostile base, which replaces ds01's reports with
// links to the host's /etc/shadow, plants a setuid-root shell and a
// trojan ds01-words 99.0 among the wheels, and tries to write ds01's
// inputs; the second builds on a clean base with --no-index.
func TestInstallContainerHostileBase(t *testing.T) {
	d := testbed.Docker(t)
	testbed.NeedRoot(t)
	ctx := context.Background()
	cache := publicDir(t, "ds01test-cache-", 0o755)
	wrap := sudoWrapper(t, cache)
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	alice, bob := testbed.NewUser(t, homes), testbed.NewUser(t, homes)
	alice.AllowSudo(t, wrap)
	bob.AllowSudo(t, wrap)
	cleanupPackageImages(t, d)
	clean := loadBase(t, d, testbed.Base(t, testbed.Bookworm), "clean")
	wheels := copyWheels(t, testbed.Wheels(t, d, "../../testdata/pypkgs"), 0o755)
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	rootLine, _, _ := strings.Cut(string(shadow), "\n")
	create := func(u testbed.User, base string, args ...string) (string, string, error) {
		p := testbed.Prefix(t)
		testbed.RemoveImage(t, d, fmt.Sprintf("ds01-%d/%s:latest", u.UID, p))
		out, errOut, err := u.Run(t, nil, "sudo", append([]string{"-n", wrap, "image", "create", p, "--base", base}, args...)...)
		return p, out + errOut, err
	}
	noImage := func(u testbed.User, p string) {
		t.Helper()
		if _, err := d.ImageInspect(ctx, fmt.Sprintf("ds01-%d/%s:latest", u.UID, p)); err == nil {
			t.Errorf("an image was made for %s", p)
		}
		if _, err := os.Lstat(filepath.Join(u.Home, ".ds01-config", "images", p+".json")); err == nil {
			t.Errorf("a record was made for %s", p)
		}
	}

	t.Run("reports replaced by links to the host", func(t *testing.T) {
		p, out, err := create(alice, hostileBase(t, d, clean, true), "--pip", "ds01-words==1.2.0", "--no-index", "--wheels", wheels)
		if err == nil || !strings.Contains(out, "no regular /ds01/out/apt.txt") || !strings.Contains(out, "takes back only regular files") {
			t.Fatalf("create on a base that links its reports to /etc/shadow: %v\n%s", err, out)
		}
		if strings.Contains(out, rootLine) {
			t.Errorf("the host's shadow line reached the terminal:\n%s", out)
		}
		noImage(alice, p)
		for f := range cacheFiles(t, cache) {
			if data, _ := os.ReadFile(f); bytes.Contains(data, []byte(rootLine)) {
				t.Errorf("the cache holds the host's shadow in %s", f)
			}
		}
		if left := testbed.LeftContainers(t, d, p); len(left) > 0 {
			t.Errorf("left containers %v", left)
		}
	})

	t.Run("planted shell and wheel", func(t *testing.T) {
		_, out, err := create(alice, hostileBase(t, d, clean, false), "--pip", "ds01-words==1.2.0", "--no-index", "--wheels", wheels, "-v")
		if err != nil {
			t.Fatalf("create on the planting base: %v\n%s", err, out)
		}
		trojan := trojanWheel(t)
		kept := false
		for f, mode := range cacheFiles(t, cache) {
			if mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 || filepath.Base(f) == "sh" {
				t.Errorf("the cache holds %s (%v)", f, mode)
			}
			if data, _ := os.ReadFile(f); bytes.Equal(data, trojan) {
				kept = true
				if filepath.Dir(f) != filepath.Join(cache, "packages", "sha256") || mode != 0o444 {
					t.Errorf("the trojan wheel is kept as %s (%v), not by its digest, read-only", f, mode)
				}
			}
			if data, _ := os.ReadFile(f); bytes.HasPrefix(data, []byte("\x7fELF")) {
				t.Errorf("the cache holds an executable: %s", f)
			}
		}
		if !kept {
			t.Errorf("the planted wheel is not in the cache at all: the attack was not carried out:\n%s", out)
		}
	})

	t.Run("another user's --no-index build", func(t *testing.T) {
		p, out, err := create(bob, clean, "--pip", "ds01-words", "--no-index", "--wheels", wheels)
		if err != nil {
			t.Fatalf("bob's create: %v\n%s", err, out)
		}
		tag := fmt.Sprintf("ds01-%d/%s:latest", bob.UID, p)
		ins, err := d.ImageInspect(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		if got := ins.Config.Labels["ds01.packages.pip"]; got != "ds01-words==1.2.0" {
			t.Errorf("bob's image has %q; want ds01-words==1.2.0, not alice's base's trojan", got)
		}
		r, err := d.Run(ctx, tag, "", "python3", "-c", "import ds01_words; print(getattr(ds01_words, 'TROJAN', False))")
		if err != nil || r.Stdout != "False\n" {
			t.Errorf("inside bob's image: %v %q %q", err, r.Stdout, r.Stderr)
		}
	})

	t.Run("root-only wheel directory", func(t *testing.T) {
		secret := copyWheels(t, testbed.Wheels(t, d, "../../testdata/pypkgs"), 0o700)
		os.WriteFile(filepath.Join(secret, "id_ed25519"), []byte("ROOT-ONLY-KEY\n"), 0o600)
		p, out, err := create(alice, clean, "--pip", "ds01-greet", "--no-index", "--wheels", secret)
		if err == nil || !strings.Contains(out, "--wheels "+secret) || !strings.Contains(out, "permission denied") || !strings.Contains(out, "rule: ds01 reads a wheel directory with your own rights") {
			t.Fatalf("create with a root-only --wheels: %v\n%s", err, out)
		}
		noImage(alice, p)
		runs, _ := os.ReadDir(filepath.Join(cache, "packages", "runs"))
		if len(runs) > 0 {
			t.Errorf("left install directories %v", runs)
		}
	})
}

// Tampered cache entries are not used: a files index with a line added
// to the skel .bashrc is read again from the base, and a corrupt package
// layer is re-hashed against its diff ID, found wrong and made again.
func TestPackageCacheVerified(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	cleanupPackageImages(t, d)
	base := loadBase(t, d, testbed.Base(t, testbed.Bookworm), "verified")
	// A copy: other tests move the shared wheel directory away for a while.
	wheels := copyWheels(t, testbed.Wheels(t, d, "../../testdata/pypkgs"), 0o755)
	c := newCLI(t)
	build := func() (string, string) {
		p := testbed.Prefix(t)
		testbed.RemoveImage(t, d, "ds01-1722830498/"+p+":latest")
		out, code := c.run(append(asBaker, "image", "create", p, "--base", base, "--pip", "ds01-words", "--no-index", "--wheels", wheels)...)
		if code != 0 {
			t.Fatalf("create: exit %d\n%s", code, out)
		}
		return "ds01-1722830498/" + p + ":latest", out
	}
	build()

	// Inject a line into every cached files index.
	idx, _ := filepath.Glob(filepath.Join(c.cache, "files", "*.tar"))
	if len(idx) == 0 {
		t.Fatal("no files index was cached")
	}
	for _, p := range idx {
		injectBashrc(t, p, "echo INJECTED\n")
	}
	// Corrupt the package layer, and drop the daemon's package image so
	// that the layer must be loaded from the cache again.
	reqs, _ := filepath.Glob(filepath.Join(c.cache, "packages", "req-*.json"))
	if len(reqs) != 1 {
		t.Fatalf("package requests %v", reqs)
	}
	var rec struct {
		Key    string `json:"key"`
		DiffID string `json:"diff_id"`
	}
	data, _ := os.ReadFile(reqs[0])
	json.Unmarshal(data, &rec)
	layer := filepath.Join(c.cache, "packages", "layers", strings.TrimPrefix(rec.DiffID, "sha256:")+".tar")
	f, err := os.OpenFile(layer, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("corrupt!"), 4096)
	f.Close()
	d.ImageRemove(ctx, "ds01-packages/"+rec.Key[:20]+":latest", client.ImageRemoveOptions{})

	since := time.Now()
	tag, out := build()
	if n := installContainers(t, since); n != 1 || !strings.Contains(out, "installed in a throwaway container") {
		t.Errorf("%d install containers after the layer was corrupted; want it made again:\n%s", n, out)
	}
	ins, _ := d.ImageInspect(ctx, tag)
	if got := ins.Config.Labels["ds01.packages.layer"]; got != rec.DiffID {
		t.Errorf("package layer %s; want %s made again", got, rec.DiffID)
	}
	r, err := d.Run(ctx, tag, "", "bash", "-c", "grep -rl INJECTED /home /etc/skel; test -s /home/h-baker/.bashrc && echo ok")
	if err != nil || r.Stdout != "ok\n" {
		t.Errorf("the injected line reached the image: %v %q", err, r.Stdout)
	}
}

// injectBashrc rewrites a files index tar with line added to every
// .bashrc in it, as a second writer of the cache would.
func injectBashrc(t *testing.T, path, line string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(data)), tar.NewWriter(&out)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if strings.HasSuffix(h.Name, ".bashrc") {
			body, found = append(body, line...), true
			h.Size = int64(len(body))
		}
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	if !found {
		t.Fatalf("no .bashrc in %s", path)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Root refuses a cache a real user owns, or can write through its group,
// naming the rule and the fix, and writes nothing into it.
func TestCacheTrustRefused(t *testing.T) {
	testbed.NeedRoot(t)
	u := testbed.NewUser(t, testbed.HomesDir(t, testbed.PlainHomes))
	for _, tc := range []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"owned by a user", func(dir string) { os.Chown(dir, int(u.UID), int(u.GID)) }, fmt.Sprintf("is owned by UID %d, not by you", u.UID)},
		{"writable by a user's group", func(dir string) { os.Chown(dir, 0, int(u.GID)); os.Chmod(dir, 0o775) }, "can be written by others"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := publicDir(t, "ds01test-cache-", 0o755)
			tc.setup(dir)
			for _, args := range [][]string{{"base", "list"}, append(slices.Clone(asBaker), "image", "create", "p", "--base", "debian:bookworm", "--pip", "x")} {
				cmd := exec.Command(testbed.Binary(t), args...)
				cmd.Env = append(os.Environ(), "DS01_CACHE="+dir, "DS01_CONFIG="+t.TempDir())
				out, err := cmd.CombinedOutput()
				if err == nil || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "rule: one writer") || !strings.Contains(string(out), "fix: ") {
					t.Errorf("%v with the cache %s: %v\n%s", args, tc.name, err, out)
				}
			}
			if ents, _ := os.ReadDir(dir); len(ents) > 0 {
				t.Errorf("ds01 wrote into a refused cache: %v", ents)
			}
		})
	}
}
