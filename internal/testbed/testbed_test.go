package testbed

import (
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The registry of the test bed is real: an image pushed with
// go-containerregistry comes back with the same digest.
func TestRegistryRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r := StartRegistry(t)
	img := Base(t, Bullseye)
	ref, err := name.ParseReference(fmt.Sprintf("%s/%s/bullseye:test", r.Host, Prefix(t)), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Fatalf("pulled %s, pushed %s", d, want)
	}
	r.Stop()
	if _, err := remote.Image(ref); err == nil {
		t.Fatal("registry still answers after Stop")
	}
}
