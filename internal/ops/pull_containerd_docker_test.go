package ops

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/testbed"
)

// On an engine with the containerd image store that holds the base,
// pulling a pushed image downloads its user layer alone (the pulled
// manifest names the base's layers as the engine holds them), gives the
// image with the same config, and runs as the user.
func TestPullContainerd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	d := testbed.Docker(t)
	ce := testbed.ContainerdEngine(t, d, testbed.Sid)
	if ce.Store != engine.Containerd {
		t.Fatalf("store %q; want containerd", ce.Store)
	}
	ctx := context.Background()
	reg := countingRegistry(t)
	prefix := testbed.Prefix(t)
	baseRef := reg.host + "/" + prefix + "/bullseye:1"
	br, _ := name.ParseReference(baseRef)
	if err := remote.Write(br, testbed.Base(t, testbed.Bullseye)); err != nil {
		t.Fatal(err)
	}
	o := &Ops{D: ce, Version: "test", ConfigDir: t.TempDir(), CacheDir: t.TempDir()}
	id := identity.Identity{Login: "h.baker@hertie-school.lan", Name: "h-baker", UID: 1722830498, GID: 1722830498, Root: true}
	made, err := o.CreateImage(ctx, id, ImageCreate{Project: prefix, BaseRef: baseRef}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := o.PushImage(ctx, id, ImagePush{Project: prefix, To: reg.host + "/" + prefix + "/pushed"}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.RetireImage(ctx, id, prefix, false, Events{}); err != nil {
		t.Fatal(err)
	}
	reg.fetched.Store(0)
	got, err := o.PullImage(ctx, id, ImagePull{Ref: res.Ref, Project: prefix + "-b"}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := name.ParseReference(res.Ref)
	pushed, _ := remote.Image(pr)
	m, _ := pushed.Manifest()
	user := m.Layers[len(m.Layers)-1].Size
	if got.Held != len(m.Layers)-1 || got.Downloaded != user || len(got.Warnings) > 0 {
		t.Errorf("%d layers held, %d bytes downloaded, warnings %q; want %d held and the user layer's %d", got.Held, got.Downloaded, got.Warnings, len(m.Layers)-1, user)
	}
	if f := reg.fetched.Load(); f != user+m.Config.Size {
		t.Errorf("the registry sent %d bytes of blobs; want the user layer %d + config %d", f, user, m.Config.Size)
	}
	ins, err := ce.ImageInspect(ctx, got.Tag)
	cn, _ := pushed.ConfigName()
	// The image ID is the manifest digest there: the push kept it too.
	if err != nil || ins.ID != res.Digest || got.ImageID != made.ImageID {
		t.Errorf("pulled image %s (%v), ds01 says %s; want the pushed manifest %s, the image made %s", ins.ID, err, got.ImageID, res.Digest, made.ImageID)
	}
	t.Logf("image %s (config %s)", got.ImageID, cn)
	run, err := ce.Run(ctx, got.Tag, "", "id", "-u")
	if err != nil || strings.TrimSpace(run.Stdout) != "1722830498" {
		t.Errorf("id -u in the pulled image: %q %v", run.Stdout, err)
	}
}
