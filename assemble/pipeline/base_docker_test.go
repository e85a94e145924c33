package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"
	"github.com/ds01/ds01/registry"
)

var hbaker = passwd.Account{Name: "h-baker", UID: 1722830498, GID: 1722830498, Groups: []string{"sudo", "video"}}

var alice = passwd.Account{Name: "alice", UID: 20000000, GID: 20000000, Groups: []string{"sudo", "video"}}

func diffIDs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.RootFS.DiffIDs
}

// A base in the daemon is read without docker save: config from inspect,
// files from a never-started container, and the user image is loaded with
// the base's layers left out of the archive.
func TestDaemonBaseDeltaLoad(t *testing.T) {
	d := testbed.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	prefix := testbed.Prefix(t)
	// A base ID of this test's own (a label), so that the containers that
	// other tests, running at the same time, make of bullseye are not
	// taken for ones this test left.
	bullseye := testbed.Base(t, testbed.Bullseye)
	cf, err := bullseye.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Labels["ds01test.prefix"] = prefix
	stackImg, err := mutate.ConfigFile(bullseye, cf)
	if err != nil {
		t.Fatal(err)
	}
	baseTag := prefix + "/bullseye-base:latest"
	testbed.RemoveImage(t, d, baseTag)
	full, err := d.Load(ctx, stackImg, baseTag, nil)
	if err != nil {
		t.Fatal(err)
	}

	base, err := source.InDaemon(ctx, d.Docker, baseTag)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := diffIDs(t, base.Image), diffIDs(t, stackImg); !slices.Equal(got, want) {
		t.Fatalf("daemon base layers %v; want %v", got, want)
	}
	cfg, _ := base.Image.ConfigFile()
	if cfg.Config.Labels["org.opencontainers.image.title"] != "debian-bullseye" || !slices.Equal(cfg.Config.Cmd, []string{"bash"}) || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config from inspect lost fields: %+v", cfg)
	}

	files, err := source.Files(ctx, d.Docker, base.ID, layers.UserWant)
	if err != nil {
		t.Fatal(err)
	}
	fromLayers, err := assemble.Files(stackImg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range slices.Concat(layers.UserWant.Files, layers.UserWant.Headers, []string{"etc/skel/.bashrc", "etc/skel/.profile"}) {
		a, aok := files.Get(p)
		b, bok := fromLayers.Get(p)
		if aok != bok {
			t.Errorf("/%s: in container copy %v, in layers %v", p, aok, bok)
			continue
		}
		if !aok {
			continue
		}
		if !bytes.Equal(a.Data, b.Data) || a.Header.Mode&0o7777 != b.Header.Mode&0o7777 || a.Header.Uid != b.Header.Uid || a.Header.Gid != b.Header.Gid || a.Header.Typeflag != b.Header.Typeflag {
			t.Errorf("/%s differs: container %+v, layers %+v", p, a.Header, b.Header)
		}
	}
	// The container used to read files is gone.
	cs, err := d.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.Items {
		if c.ImageID == base.ID {
			t.Errorf("container %s of the base is left behind", c.ID)
		}
	}

	res, err := assemble.Image(base.Image, files, assemble.Options{Account: hbaker})
	if err != nil {
		t.Fatal(err)
	}
	tag := prefix + "/h-baker:latest"
	testbed.RemoveImage(t, d, tag)
	inBase := map[v1.Hash]bool{}
	for _, h := range diffIDs(t, base.Image) {
		inBase[h] = true
	}
	st, err := d.Load(ctx, res.Image, tag, func(h v1.Hash) bool { return inBase[h] })
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent >= 1<<20 || st.Sent*100 > full.Sent {
		t.Errorf("delta load sent %d bytes (full load of the base: %d); want well under 1 MB", st.Sent, full.Sent)
	}
	t.Logf("base load %d bytes, delta load %d bytes", full.Sent, st.Sent)
	ins, err := d.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	want := diffIDs(t, res.Image)
	var got []v1.Hash
	for _, l := range ins.RootFS.Layers {
		h, _ := v1.NewHash(l)
		got = append(got, h)
	}
	if !slices.Equal(got, want) {
		t.Errorf("loaded layers %v; want %v", got, want)
	}
	if id, _ := res.Image.ConfigName(); ins.ID != id.String() {
		t.Errorf("daemon image ID %s; assembled config digest %s", ins.ID, id)
	}
	testbed.AssertUserInside(t, d, tag, files, hbaker)
}

// The fact the delta load rests on, checked on this engine: the loader
// reads a layer's file only when it lacks the layer. A delta for a base
// the daemon does not hold must fail, and leave no image.
func TestDeltaLoadNeedsBase(t *testing.T) {
	d := testbed.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var b bytes.Buffer
	layers.Write(&b, []layers.Entry{{Path: "etc", Type: '5', Mode: 0o755}, {Path: "etc/passwd", Type: '0', Mode: 0o644, Data: []byte("root:x:0:0::/root:/bin/sh\n" + testbed.Prefix(t))}})
	img, err := registry.ImageFromLayers("orphan", layers.FromBytes(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	tag := testbed.Prefix(t) + "/orphan:latest"
	testbed.RemoveImage(t, d, tag)
	_, err = d.Load(ctx, img, tag, func(v1.Hash) bool { return true })
	if err == nil {
		t.Fatal("a delta load without its base succeeded")
	}
	if !strings.Contains(err.Error(), "docker load") {
		t.Errorf("error does not say what failed: %v", err)
	}
	if _, err := d.ImageInspect(ctx, tag); err == nil {
		t.Error("a failed load left an image")
	}
	if _, err := source.InDaemon(ctx, d.Docker, tag); !errors.Is(err, source.ErrNotInDaemon) {
		t.Errorf("Base of a missing image: %v; want ErrNotInDaemon", err)
	}
}
