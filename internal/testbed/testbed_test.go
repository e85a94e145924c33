package testbed

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestParseSources(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   string
		deb822 bool
		want   []Source
	}{
		{"deb822", "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n", true,
			[]Source{{URI: "http://mirror.example/debian", Suites: []string{"bookworm", "bookworm-updates"}}}},
		{"deb822 disabled", "Enabled: no\nTypes: deb\nURIs: http://x.example/debian\nSuites: bookworm\n", true, nil},
		{"one-line", "# deb http://old.example/debian buster main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\ndeb-src http://s.example/debian bookworm main\ndeb http://n.example/debian bookworm-security main\n", false,
			[]Source{{URI: "http://m.example/debian", Suites: []string{"bookworm"}}, {URI: "http://n.example/debian", Suites: []string{"bookworm-security"}}}},
		{"broken options", "deb [arch=amd64 http://m.example/debian bookworm\n", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseSources(tc.data, tc.deb822); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseSources(f *testing.F) {
	f.Add("Types: deb\nURIs: http://m/debian\nSuites: bookworm\n", true)
	f.Add("deb [x=y] http://m/debian bookworm main\n", false)
	f.Fuzz(func(t *testing.T, data string, deb822 bool) {
		for _, s := range ParseSources(data, deb822) {
			if s.URI == "" {
				t.Fatalf("empty URI from %q", data)
			}
		}
	})
}

// The registry of the test bed is real: an image pushed with
// go-containerregistry comes back with the same digest.
func TestRegistryRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r := StartRegistry(t)
	img, err := Bullseye.Image(context.Background())
	if err != nil {
		t.Fatal(err)
	}
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
