package main

import (
	"archive/tar"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/testbed"
)

// Packages on the containerd image store: the shared package image is
// loaded as a delta on the base, records its layer descriptors, and the
// user layer goes on it as a delta too; a second user reuses it with no
// install. The engine's containers reach no network, so the packages come
// from a local wheel directory (under /tmp, which the engine shares).
func TestImagePackagesContainerd(t *testing.T) {
	d := testbed.Docker(t)
	e := testEngine{"containerd", testbed.ContainerdEngine(t, d, testbed.Sid)}
	ce := e.d
	ctx := context.Background()
	c := e.cli(t)
	base := e.loadBase(t, c, testbed.Base(t, testbed.Bookworm), "pkgbase")
	wheels := t.TempDir()
	if err := os.CopyFS(wheels, os.DirFS(testbed.Wheels(t, d, "../../testdata/pypkgs"))); err != nil {
		t.Fatal(err)
	}
	project := testbed.Prefix(t)
	tag := "ds01-1722830498/" + project + ":latest"
	testbed.RemoveImage(t, ce, tag)
	pkgArgs := []string{"--base", base, "--pip", "ds01-greet", "--wheels", wheels, "--no-index"}
	out, code := c.run(append(append(asBaker, "image", "create", project, "-v"), pkgArgs...)...)
	if code != 0 || !strings.Contains(out, "installed in a throwaway container") || !strings.Contains(out, "load path: delta: containerd image store") {
		t.Fatalf("create with packages: exit %d:\n%s", code, out)
	}
	ins, err := ce.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	layer := ins.Config.Labels["ds01.packages.layer"]
	baseIns, _ := ce.ImageInspect(ctx, base)
	if n := len(ins.RootFS.Layers); n != len(baseIns.RootFS.Layers)+2 || ins.RootFS.Layers[n-2] != layer {
		t.Errorf("layers %v; want the base's, then %s, then the user's", ins.RootFS.Layers, layer)
	}
	pkgImage := "ds01-packages/"
	list, _ := ce.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", "ds01-packages/*")})
	for _, im := range list.Items {
		for _, rt := range im.RepoTags {
			pkgImage = rt
			testbed.RemoveImage(t, ce, rt)
		}
	}
	if n := blobsSaved(t, ce, pkgImage); n != len(baseIns.RootFS.Layers)+3 {
		t.Errorf("docker save %s: %d blobs; want the base's %d layers, the package layer, config and manifest", pkgImage, n, len(baseIns.RootFS.Layers))
	}
	if n := blobsSaved(t, ce, tag); n != len(baseIns.RootFS.Layers)+4 {
		t.Errorf("docker save %s: %d blobs; want every layer, config and manifest", tag, n)
	}
	r, err := ce.Run(ctx, tag, "", "bash", "-lc", `python3 -c 'import ds01_greet' && ds01-greet && id -un`)
	if err != nil || r.Stdout != "hello from a ds01 package layer\nh-baker\n" {
		t.Errorf("inside: %v\n%s%s", err, r.Stdout, r.Stderr)
	}

	// A second user: the shared package image is the base, its
	// descriptors from ds01's record in it; nothing installed.
	alice := []string{"--user", "alice", "--uid", "20000000", "--gid", "20000000"}
	testbed.RemoveImage(t, ce, "ds01-20000000/"+project+":latest")
	ca := &cliEnv{t: t, config: t.TempDir(), cache: c.cache, extra: c.extra}
	since := time.Now()
	out, code = ca.run(append(append(alice, "image", "create", project, "-v"), pkgArgs...)...)
	if code != 0 || !strings.Contains(out, "shared layer reused, nothing installed") || !strings.Contains(out, "from ds01's record in the image's ds01.layers label") {
		t.Fatalf("second user: exit %d:\n%s", code, out)
	}
	if s := sentRE.FindStringSubmatch(out); s == nil || len(s[1]) > 6 {
		t.Errorf("second user: want under 1 MB sent:\n%s", out)
	}
	t.Logf("second user on the containerd store: %s", time.Since(since).Round(time.Millisecond))
}

// blobsSaved counts the blobs docker save writes for ref.
func blobsSaved(t *testing.T, e interface {
	ImageSave(context.Context, []string, ...client.ImageSaveOption) (client.ImageSaveResult, error)
}, ref string) int {
	t.Helper()
	rc, err := e.ImageSave(context.Background(), []string{ref})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n := 0
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			return n
		}
		if h.Typeflag == tar.TypeReg && strings.HasPrefix(h.Name, "blobs/sha256/") {
			n++
		}
	}
}
