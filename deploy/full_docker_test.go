package deploy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/registry"
)

// On the containerd image store ds01 sends the whole image, base
// included, from its cache. This engine uses a graphdriver, where a full
// load works as well, so the path is exercised here for real by telling
// the client it is on the other store.
func TestCreateFullPath(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	reg := testbed.StartRegistry(t)
	ref := reg.Host + "/" + testbed.Prefix(t) + "/bullseye:1"
	r, _ := name.ParseReference(ref)
	img := testbed.Base(t, testbed.Bullseye)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	cache, err := registry.OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d.Store = deploy.Containerd
	project := testbed.Prefix(t)
	tag := "ds01-1722830498/" + project + ":latest"
	testbed.RemoveImage(t, d, tag)
	res, err := d.Create(ctx, deploy.CreateRequest{Login: "h.baker@hertie-school.lan", Account: hbaker, Project: project, BaseRef: ref,
		Cache: cache, Resolve: deploy.ResolveOptions{Cache: cache}})
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	size, _ := ls[0].Size()
	if !strings.HasPrefix(res.LoadPath, "full: containerd image store") || res.Sent < size || res.Resolution.From != "registry" {
		t.Errorf("load path %q, sent %d (base %d), from %q", res.LoadPath, res.Sent, size, res.Resolution.From)
	}
	files, ok := cache.Files(res.Base.ID)
	if !ok {
		t.Fatal("the base's files were not indexed")
	}
	testbed.AssertUserInside(t, d, tag, files, hbaker)

	// A base only the daemon holds cannot be sent whole: a clear error.
	_, e := d.Create(ctx, deploy.CreateRequest{Login: "x", Account: hbaker, Project: project + "-x", BaseRef: tag,
		Cache: cache, Resolve: deploy.ResolveOptions{Cache: cache, Offline: true}})
	if !errors.Is(e, deploy.ErrOffline) || !strings.Contains(e.Error(), "containerd image store") {
		t.Errorf("daemon-only base on the containerd store: %v", e)
	}
}
