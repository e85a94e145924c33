package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"
	"github.com/ds01/ds01/registry"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds ds01 once for the package's tests.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ds01-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ds01")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = err
			t.Logf("%s", out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// cli runs the binary with its own config and cache directories.
type cliEnv struct {
	t      *testing.T
	config string
	cache  string
	extra  []string
}

func newCLI(t *testing.T) *cliEnv {
	return &cliEnv{t: t, config: t.TempDir(), cache: t.TempDir()}
}

func (c *cliEnv) run(args ...string) (string, int) {
	c.t.Helper()
	return c.runIn("", args...)
}

// runIn runs the binary with stdin, which is not a terminal.
func (c *cliEnv) runIn(stdin string, args ...string) (string, int) {
	c.t.Helper()
	cmd := exec.Command(binary(c.t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "DS01_CONFIG="+c.config, "DS01_CACHE="+c.cache)
	cmd.Env = append(cmd.Env, c.extra...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return string(out), 0
}

var asBaker = []string{"--user", "h.baker@hertie-school.lan", "--uid", "1722830498", "--gid", "1722830498"}

var hbaker = passwd.Account{Name: "h-baker", UID: 1722830498, GID: 1722830498}

var (
	idRE   = regexp.MustCompile(`(?m)^ds01-\d+/\S+  (sha256:[0-9a-f]{64})$`)
	sentRE = regexp.MustCompile(`sent (\d+) bytes`)
	dryRE  = regexp.MustCompile(`(?m)^ds01-\d+/\S+  (sha256:[0-9a-f]{64})  \(dry run: nothing loaded\)$`)
)

// loadBase puts img into the daemon under a test tag, removed afterwards.
func loadBase(t *testing.T, d *deploy.Daemon, img v1.Image, name string) string {
	t.Helper()
	tag := testbed.Prefix(t) + "/" + name + ":latest"
	testbed.RemoveImage(t, d, tag)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := d.Load(ctx, img, tag, nil); err != nil {
		t.Fatal(err)
	}
	return tag
}

// image create, update, list and retire on each engine, with a bullseye
// and a bookworm base.
func TestImageCreate(t *testing.T) {
	for _, e := range engines(t) {
		for _, base := range []registry.Debian{testbed.Bullseye, testbed.Bookworm} {
			t.Run(e.name+"/"+base.Suite, func(t *testing.T) { testImageCreate(t, e, base) })
		}
	}
}

func testImageCreate(t *testing.T, e testEngine, base registry.Debian) {
	d := e.d
	ctx := context.Background()
	stack := testbed.Base(t, base)
	c := e.cli(t)
	baseTag := e.loadBase(t, c, stack, base.Suite)
	project := testbed.Prefix(t) + "-" + base.Suite
	tag := "ds01-1722830498/" + project + ":latest"
	testbed.RemoveImage(t, d, tag)

	// A dry run names the load path and the ID the image will have.
	wantPath := map[engine.Store]string{engine.GraphDriver: "would load delta: graphdriver store",
		engine.Containerd: "would load delta: containerd image store, base layers left out, named by the descriptors the engine holds them under, from the manifest in ds01's cache"}[d.Store]
	dry, code := c.run(append(asBaker, "image", "create", project, "--base", baseTag, "--dry-run")...)
	dm := dryRE.FindStringSubmatch(dry)
	if code != 0 || dm == nil || !strings.Contains(dry, wantPath) {
		t.Fatalf("dry run: exit %d, want an ID and %q:\n%s", code, wantPath, dry)
	}
	if _, err := d.ImageInspect(ctx, tag); err == nil {
		t.Fatal("a dry run made the image")
	}

	out, code := c.run(append(asBaker, "image", "create", project+":latest", "--base", baseTag)...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	m, s := idRE.FindStringSubmatch(out), sentRE.FindStringSubmatch(out)
	if m != nil && m[1] != dm[1] {
		t.Errorf("the dry run said %s, the image is %s", dm[1], m[1])
	}
	if m == nil || s == nil {
		t.Fatalf("output names no image ID or bytes sent:\n%s", out)
	}
	if n, _ := strconv.Atoi(s[1]); n >= 1<<20 {
		t.Errorf("sent %d bytes to a daemon that holds the base; want well under 1 MB", n)
	}
	ins, err := d.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if ins.ID != m[1] {
		t.Errorf("daemon has %s, ds01 said %s", ins.ID, m[1])
	}
	baseIns, _ := d.ImageInspect(ctx, baseTag)
	if len(ins.RootFS.Layers) != len(baseIns.RootFS.Layers)+1 {
		t.Errorf("%d layers on a %d-layer base; want one more", len(ins.RootFS.Layers), len(baseIns.RootFS.Layers))
	}
	hist, err := d.ImageHistory(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if top := hist.Items[0]; top.Size >= 1<<20 || !strings.Contains(top.CreatedBy, "ds01: user h-baker") {
		t.Errorf("top layer: %d bytes, %q; want ds01's, under 1 MB", top.Size, top.CreatedBy)
	}
	files, err := source.Files(ctx, d.Docker, baseIns.ID, layers.UserWant)
	if err != nil {
		t.Fatal(err)
	}
	testbed.AssertUserInside(t, d, tag, files, hbaker)

	// Same inputs, same image ID: again with --force, and by update.
	out2, code := c.run(append(asBaker, "image", "create", project, "--base", baseTag, "--force", "-v")...)
	if m2 := idRE.FindStringSubmatch(out2); code != 0 || m2 == nil || m2[1] != m[1] {
		t.Errorf("second create: exit %d, want image %s:\n%s", code, m[1], out2)
	}
	if want := "load path: " + strings.TrimPrefix(wantPath, "would load "); !strings.Contains(out2, want) {
		t.Errorf("-v does not say %q:\n%s", want, out2)
	}
	out3, code := c.run(append(asBaker, "image", "update", project)...)
	if m3 := idRE.FindStringSubmatch(out3); code != 0 || m3 == nil || m3[1] != m[1] {
		t.Errorf("update: exit %d, want image %s:\n%s", code, m[1], out3)
	}
	// Without --force an existing image is not replaced.
	if out, code := c.run(append(asBaker, "image", "create", project, "--base", baseTag)...); code != 1 || !strings.Contains(out, "image update "+project) {
		t.Errorf("create over an existing image: exit %d:\n%s", code, out)
	}

	out, code = c.run(append(asBaker, "image", "list", "--json")...)
	var list []pipeline.ImageInfo
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil {
		t.Fatalf("image list --json: exit %d, %v:\n%s", code, err, out)
	}
	found := false
	for _, im := range list {
		if im.Tag == tag {
			found = im.Matches && im.Project == project && im.Base == baseTag
		}
	}
	if !found {
		t.Errorf("image list does not show %s as matching: %+v", tag, list)
	}
	// Another user's UID sees a mismatch on update.
	if out, code := c.run("--user", "h.baker@hertie-school.lan", "--uid", "1722830498", "--gid", "1000", "image", "update", project); code != 1 || !strings.Contains(out, "--force") {
		t.Errorf("update with another GID: exit %d:\n%s", code, out)
	}

	out, code = c.run(append(asBaker, "image", "retire", project)...)
	if code != 0 {
		t.Fatalf("retire: exit %d:\n%s", code, out)
	}
	if _, err := d.ImageInspect(ctx, tag); err == nil {
		t.Error("image still there after retire")
	}
	if _, err := os.Stat(filepath.Join(c.config, "images", project+".json")); !os.IsNotExist(err) {
		t.Errorf("record still there after retire: %v", err)
	}
}

// writeRandomLayer writes a tar with one file of n incompressible bytes.
func randomLayer(t *testing.T, n int64) v1.Layer {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	var b bytes.Buffer
	if err := layers.Write(&b, []layers.Entry{
		{Path: "opt", Type: '5', Mode: 0o755},
		{Path: "opt/weights.bin", Type: '0', Mode: 0o644, Data: data},
	}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := layers.FromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A daemon that holds a base with a 256 MB incompressible layer receives
// only the user layer and the config.
func TestImageCreateBigBase(t *testing.T) {
	d := testbed.Docker(t)
	bullseye, err := layers.FromFile(mustTar(t, testbed.Bullseye))
	if err != nil {
		t.Fatal(err)
	}
	img, err := registry.ImageFromLayers("big", bullseye, randomLayer(t, 256<<20))
	if err != nil {
		t.Fatal(err)
	}
	baseTag := loadBase(t, d, img, "big")

	// The base resolves and yields its account files without reading its
	// layers: the heap does not grow with the 256 MB layer.
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	b, err := source.InDaemon(context.Background(), d.Docker, baseTag)
	if err != nil {
		t.Fatal(err)
	}
	files, err := source.Files(context.Background(), d.Docker, b.ID, layers.UserWant)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if _, ok := files.Get("etc/passwd"); !ok {
		t.Fatal("no /etc/passwd from the big base")
	}
	if grew := int64(after.TotalAlloc - before.TotalAlloc); grew > 32<<20 {
		t.Errorf("resolving the base and its files allocated %d MB; the 256 MB layer must not be read", grew>>20)
	}
	t.Logf("256 MB base: resolved and files read in %s, %d KB allocated", took, (after.TotalAlloc-before.TotalAlloc)>>10)

	project := testbed.Prefix(t) + "-big"
	testbed.RemoveImage(t, d, "ds01-1722830498/"+project+":latest")
	out, code := newCLI(t).run(append(asBaker, "image", "create", project, "--base", baseTag)...)
	s := sentRE.FindStringSubmatch(out)
	if code != 0 || s == nil {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if n, _ := strconv.Atoi(s[1]); n >= 1<<20 {
		t.Errorf("sent %d bytes on a 256 MB base the daemon holds; want well under 1 MB", n)
	}
	t.Logf("%s", out)
}

func mustTar(t *testing.T, b registry.Debian) string {
	t.Helper()
	testbed.Base(t, b) // builds it if missing
	dir := os.Getenv("DS01_TESTBED_CACHE")
	if dir == "" {
		c, _ := os.UserCacheDir()
		dir = filepath.Join(c, "ds01-testbed")
	}
	p, err := b.Tar(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Bad input: a clear message, a non-zero exit, and nothing left behind.
func TestImageCreateBadInput(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	bullseye := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "bullseye")
	mk := func(name string, entries ...layers.Entry) string {
		var b bytes.Buffer
		if err := layers.Write(&b, entries); err != nil {
			t.Fatal(err)
		}
		img, err := registry.ImageFromLayers(name, layers.FromBytes(b.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		return loadBase(t, d, img, name)
	}
	scratch := mk("scratch", layers.Entry{Path: "hello", Type: '0', Mode: 0o755, Data: []byte("not a shell")})
	escape := mk("escape", layers.Entry{Path: "etc", Type: '5', Mode: 0o755},
		layers.Entry{Path: "etc/passwd", Type: '2', Mode: 0o777, Linkname: "../../../../../host/etc/passwd"})

	for _, tc := range []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"unknown base", append(asBaker, "--base", "ds01test-none/nothing:latest"), nil, 1, "is not in the Docker daemon nor in ds01's cache"},
		{"unknown base, offline", append(asBaker, "--base", "ds01test-none/nothing:latest", "--offline"), nil, 1, "--offline forbids fetching it"},
		{"unreachable daemon", append(asBaker, "--base", bullseye), []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, 1, "cannot reach the Docker daemon"},
		{"login sanitizes to nothing", []string{"--user", "...@x", "--uid", "5000", "--gid", "5000", "--base", bullseye}, nil, 2, "empty user name"},
		{"UID 0", []string{"--user", "alice", "--uid", "0", "--gid", "5000", "--base", bullseye}, nil, 2, "UID 0"},
		{"GID of a system group", []string{"--user", "alice", "--uid", "5000", "--gid", "65534", "--base", bullseye}, nil, 1, `system group "nogroup"`},
		{"passwd symlinked out of the root", append(asBaker, "--base", escape), nil, 1, "outside the image root"},
		{"bad project name", append(asBaker, "--base", bullseye), []string{"PROJECT=My Project"}, 2, "not a valid image name"},
		{"project with another tag", append(asBaker, "--base", bullseye), []string{"PROJECT=p:v2"}, 2, "drop the :v2"},
		{"no base", asBaker, nil, 2, "--base REF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			c.extra = tc.env
			project := testbed.Prefix(t)
			for _, e := range tc.env {
				if p, ok := strings.CutPrefix(e, "PROJECT="); ok {
					project = p
				}
			}
			args := tc.args
			// global flags first, then the command
			var global, local []string
			for i := 0; i < len(args); i++ {
				switch args[i] {
				case "--user", "--uid", "--gid":
					global = append(global, args[i], args[i+1])
					i++
				default:
					local = append(local, args[i])
				}
			}
			out, code := c.run(append(append(global, "image", "create", project), local...)...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d:\n%s\nwant exit %d and %q", code, out, tc.code, tc.want)
			}
			// Nothing left: no image of the project, no record, no container.
			imgs, _ := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", "*/"+project)})
			if len(imgs.Items) > 0 {
				t.Errorf("left image(s) %v", imgs.Items[0].RepoTags)
			}
			// The project's empty lock file stays, by design.
			if ents, _ := os.ReadDir(filepath.Join(c.config, "images")); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return !strings.HasPrefix(e.Name(), ".lock-") }) {
				t.Errorf("left records %v", ents)
			}
			if left := testbed.LeftContainers(t, d, project); len(left) > 0 {
				t.Errorf("left containers %v", left)
			}
		})
	}

	// A base without /etc/passwd gets the files.
	t.Run("scratch base", func(t *testing.T) {
		project := testbed.Prefix(t)
		tag := "ds01-1722830498/" + project + ":latest"
		testbed.RemoveImage(t, d, tag)
		out, code := newCLI(t).run(append(asBaker, "image", "create", project, "--base", scratch)...)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		ins, err := d.ImageInspect(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		files, err := source.Files(ctx, d.Docker, ins.ID, layers.Want{Files: []string{"etc/passwd", "etc/sudoers.d/ds01-h-baker"}})
		if err != nil {
			t.Fatal(err)
		}
		pw, ok := files.Get("etc/passwd")
		if !ok || !strings.Contains(string(pw.Data), "root:x:0:0:") || !strings.Contains(string(pw.Data), "h-baker:x:1722830498:1722830498:") {
			t.Errorf("/etc/passwd in the image: %v %+v", ok, pw)
		}
		if _, ok := files.Get("etc/sudoers.d/ds01-h-baker"); !ok {
			t.Error("no sudoers entry")
		}
	})
}

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		go testbed.PrebuildKube() // minutes on a fresh machine, beside tests that wait on Docker
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// --framework/--version pick the base from a catalog; the choice is in the
// labels and the record, and image update uses it again.
func TestImageCreateFromCatalog(t *testing.T) {
	d := testbed.Docker(t)
	baseTag := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "pytorch-2-5-1")
	c := newCLI(t)
	catalog := filepath.Join(t.TempDir(), "ml_images.repo")
	if err := os.WriteFile(catalog, []byte("Pytorch, 2.5.1, CUDA_ADA, "+baseTag+"\nPytorch, 2.4.0, CUDA_ADA, none/none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	project := testbed.Prefix(t)
	tag := "ds01-1722830498/" + project + ":latest"
	testbed.RemoveImage(t, d, tag)
	out, code := c.run(append(asBaker, "image", "create", project, "--framework", "pytorch", "--version", "2.5.1", "--catalog", catalog)...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	ins, err := d.ImageInspect(context.Background(), tag)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"ds01.catalog.framework": "Pytorch", "ds01.catalog.version": "2.5.1", "ds01.base": baseTag, "aime.mlc.DS01_USERNAME": "h-baker"} {
		if got := ins.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q; want %q", k, got, want)
		}
	}
	if out, code := c.run(append(asBaker, "image", "update", project)...); code != 0 || !strings.Contains(out, ins.ID) {
		t.Errorf("update: exit %d, want %s:\n%s", code, ins.ID, out)
	}
	if out, code := c.run(append(asBaker, "image", "create", project+"-x", "--framework", "pytorch", "--catalog", catalog)...); code != 2 || !strings.Contains(out, "Pytorch 2.4.0 (CUDA_ADA)") {
		t.Errorf("ambiguous: exit %d:\n%s", code, out)
	}
}

// The old flow's committed images ({image}:{name}._.{UID}) are found and
// removed only after confirmation; other users' stay.
func TestImageLegacy(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "aime")
	repo := strings.TrimSuffix(base, ":latest")
	mine, theirs := repo+":work._.1722830498", repo+":work._.1001"
	for _, tag := range []string{mine, theirs} {
		if _, err := d.ImageTag(ctx, client.ImageTagOptions{Source: base, Target: tag}); err != nil {
			t.Fatal(err)
		}
		testbed.RemoveImage(t, d, tag)
	}
	c := newCLI(t)
	out, code := c.run(append(asBaker, "image", "list", "--legacy")...)
	if code != 0 || !strings.Contains(out, mine) || strings.Contains(out, theirs) {
		t.Fatalf("list --legacy: exit %d:\n%s", code, out)
	}
	if out, code := c.run(append(asBaker, "image", "retire", "--legacy")...); code != 1 || !strings.Contains(out, "nothing removed") {
		t.Errorf("retire --legacy without --yes and no answer: exit %d:\n%s", code, out)
	}
	if _, err := d.ImageInspect(ctx, mine); err != nil {
		t.Fatal("removed without confirmation")
	}
	if out, code := c.run(append(asBaker, "image", "retire", "--legacy", "--yes")...); code != 0 || !strings.Contains(out, "removed "+mine) {
		t.Errorf("retire --legacy --yes: exit %d:\n%s", code, out)
	}
	if _, err := d.ImageInspect(ctx, mine); err == nil {
		t.Error("still there after retire --legacy --yes")
	}
	if _, err := d.ImageInspect(ctx, theirs); err != nil {
		t.Error("another user's committed image was removed")
	}
}
