package deploy_test

import (
	"context"
	"testing"
	"time"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/passwd"
	"github.com/ds01/ds01/registry"
)

// The user layer on a real Debian base, loaded into the real daemon and
// checked from inside a container running as the user.
func TestUserLayerInContainer(t *testing.T) {
	for _, base := range []registry.Debian{testbed.Bullseye, testbed.Bookworm} {
		t.Run(base.Suite, func(t *testing.T) {
			d := testbed.Docker(t)
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
		})
	}
}
