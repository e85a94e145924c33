package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/passwd"
	"github.com/ds01/ds01/registry"
)

// The user layer on a real Debian base, loaded into the real daemon and
// checked from inside a container running as the user.
// On each engine: the machine's (graphdriver store) and Debian sid's
// Docker 28 with the containerd image store.
func TestUserLayerInContainer(t *testing.T) {
	machine := testbed.Docker(t)
	for _, e := range []struct {
		name string
		d    *deploy.Daemon
	}{{"graphdriver", machine}, {"containerd", testbed.ContainerdEngine(t, machine, testbed.Sid)}} {
		for _, base := range []registry.Debian{testbed.Bullseye, testbed.Bookworm} {
			t.Run(e.name+"/"+base.Suite, func(t *testing.T) { testUserLayerInContainer(t, e.d, base) })
		}
	}
}

func testUserLayerInContainer(t *testing.T, d *deploy.Daemon, base registry.Debian) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img := testbed.Base(t, base)
	files, err := assemble.Files(img)
	if err != nil {
		t.Fatal(err)
	}
	name, err := passwd.Sanitize("h.baker@hertie-school.lan")
	if err != nil {
		t.Fatal(err)
	}
	if name != hbaker.Name {
		t.Fatalf("h.baker@hertie-school.lan sanitizes to %q", name)
	}
	res, err := assemble.Image(img, files, assemble.Options{Account: hbaker})
	if err != nil {
		t.Fatal(err)
	}
	tag := testbed.Prefix(t) + "/" + base.Suite + ":latest"
	testbed.RemoveImage(t, d, tag)
	if _, err := d.Load(ctx, res.Image, tag, nil); err != nil {
		t.Fatal(err)
	}

	testbed.AssertUserInside(t, d, tag, files, hbaker)
}
