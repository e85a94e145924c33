package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/registry"
)

// A base that only a registry has: base pull into the cache, image create
// from it (the base streamed into the daemon once), and, with the registry
// gone and the base removed from the daemon, --offline from the cache.
func TestImageCreateFromRegistry(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	reg := testbed.StartRegistry(t)
	ref := reg.Host + "/" + testbed.Prefix(t) + "/bullseye:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, testbed.Base(t, testbed.Bullseye)); err != nil {
		t.Fatal(err)
	}
	testbed.RemoveImage(t, d, ref)
	c := newCLI(t)

	out, code := c.run("base", "pull", ref)
	if code != 0 || !strings.Contains(out, "fetched 134.1 MB") || !strings.Contains(out, "linux/amd64, 1 layers") {
		t.Fatalf("base pull: exit %d:\n%s", code, out)
	}
	out, code = c.run("base", "pull", ref)
	if code != 0 || !strings.Contains(out, "fetched 0 B") || !strings.Contains(out, "1 layers already cached") {
		t.Fatalf("second base pull: exit %d:\n%s", code, out)
	}
	out, code = c.run("base", "list", "--json")
	var es []registry.Entry
	if err := json.Unmarshal([]byte(out), &es); code != 0 || err != nil || len(es) != 1 || es[0].Ref != ref {
		t.Fatalf("base list: exit %d, %v:\n%s", code, err, out)
	}

	project := testbed.Prefix(t)
	tag := "ds01-1722830498/" + project + ":latest"
	testbed.RemoveImage(t, d, tag)
	out, code = c.run(append(asBaker, "image", "create", project, "--base", ref, "-v")...)
	if code != 0 || !strings.Contains(out, "streaming "+es[0].Digest+" from the cache into the daemon") {
		t.Fatalf("create from the cache: exit %d:\n%s", code, out)
	}
	first := idRE.FindStringSubmatch(out)
	ins, err := d.ImageInspect(ctx, tag)
	if err != nil || first == nil || ins.Config.Labels["org.opencontainers.image.base.digest"] != es[0].Digest {
		t.Fatalf("image %v, labels %v:\n%s", err, ins.Config.Labels, out)
	}
	// The second build finds the base in the daemon and sends only its layer.
	out, code = c.run(append(asBaker, "image", "create", project, "--base", ref, "--force", "-v")...)
	if m := idRE.FindStringSubmatch(out); code != 0 || m == nil || m[1] != first[1] || !strings.Contains(out, "in the Docker daemon") {
		t.Fatalf("second create: exit %d:\n%s", code, out)
	}

	// Offline: the registry is gone, the daemon has neither image nor base.
	reg.Stop()
	for _, x := range []string{tag, ref} {
		d.ImageRemove(ctx, x, client.ImageRemoveOptions{Force: true})
	}
	out, code = c.run(append(asBaker, "image", "create", project, "--base", ref, "--offline")...)
	if m := idRE.FindStringSubmatch(out); code != 0 || m == nil || m[1] != first[1] {
		t.Fatalf("offline create: exit %d, want image %s:\n%s", code, first[1], out)
	}
	// Offline and not cached: a clear error naming the ref.
	missing := reg.Host + "/nothing/here:1"
	if out, code := c.run(append(asBaker, "image", "create", project+"-x", "--base", missing, "--offline")...); code != 1 || !strings.Contains(out, missing) || !strings.Contains(out, "--offline forbids") {
		t.Errorf("offline, not cached: exit %d:\n%s", code, out)
	}
	// Unreachable registry: clear error, nothing half-written.
	if out, code := c.run("base", "pull", missing); code != 1 || !strings.Contains(out, "cannot reach the registry") {
		t.Errorf("pull from a stopped registry: exit %d:\n%s", code, out)
	}
	if out, code := c.run("base", "pull", "Not/A Ref"); code != 2 || !strings.Contains(out, "not an image reference") {
		t.Errorf("bad ref: exit %d:\n%s", code, out)
	}
	ents, _ := os.ReadDir(filepath.Join(c.cache, "oci", "blobs", "sha256"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary blob left: %s", e.Name())
		}
	}
	// Prune keeps what the cached base uses.
	if out, code := c.run("base", "prune", "--dry-run"); code != 0 || !strings.Contains(out, "would remove 0 unused blobs") {
		t.Errorf("prune --dry-run: exit %d:\n%s", code, out)
	}
}
