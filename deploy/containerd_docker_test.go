package deploy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/registry"
)

// On a real engine with the containerd image store (Debian's Docker 26,
// started by the test bed): ds01 detects the store, sends the whole image
// with the base from its cache, and the user is there inside a container.
// Docker reports the manifest digest as the image ID there, not the config
// digest.
func TestContainerdEngine(t *testing.T) {
	d := testbed.Docker(t)
	ce := testbed.ContainerdEngine(t, d)
	if ce.Store != deploy.Containerd {
		t.Fatalf("store %q; want containerd (driver %s)", ce.Store, ce.Driver)
	}
	ctx := context.Background()
	reg := testbed.StartRegistry(t)
	ref := reg.Host + "/" + testbed.Prefix(t) + "/bullseye:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, testbed.Base(t, testbed.Bullseye)); err != nil {
		t.Fatal(err)
	}
	cache, err := registry.OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	project := testbed.Prefix(t)
	res, err := ce.Create(ctx, deploy.CreateRequest{Login: "h.baker@hertie-school.lan", Account: hbaker, Project: project, BaseRef: ref,
		Cache: cache, Resolve: deploy.ResolveOptions{Cache: cache}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.LoadPath, "full: containerd image store") {
		t.Errorf("load path %q", res.LoadPath)
	}
	tag := "ds01-1722830498/" + project + ":latest"
	ins, err := ce.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if ins.ID != res.ImageID {
		t.Errorf("ds01 reports %s, the engine %s", res.ImageID, ins.ID)
	}
	t.Logf("containerd store: image ID %s (a manifest digest there); base %s", ins.ID, ins.Config.Labels["ds01.base.id"])
	files, ok := cache.Files(res.Base.ID)
	if !ok {
		t.Fatal("base files not indexed")
	}
	testbed.AssertUserInside(t, ce, tag, files, hbaker)
}
