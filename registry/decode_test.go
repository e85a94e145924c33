package registry

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ds01/ds01/internal/limits"
)

func seedManifest(layers int, size int64) []byte {
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2, Config: v1.Descriptor{MediaType: types.DockerConfigJSON, Size: 10, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}}}
	for range layers {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerLayer, Size: size, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}})
	}
	b, _ := json.Marshal(m)
	return b
}

func TestDecodeManifestLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		want string // "" for accepted
	}{
		{"ordinary", seedManifest(3, 1000), ""},
		{"125 layers", seedManifest(125, 1000), ""},
		{"126 layers", seedManifest(126, 1000), "number of layers limit of 125"},
		{"size -1", seedManifest(1, -1), "declares size -1"},
		{"100 GiB and more", seedManifest(2, 60<<30), "pull size limit"},
		{"too big", append(seedManifest(1, 1), make([]byte, 5<<20)...), "manifest or index size limit"},
		{"schema 1", []byte(`{"schemaVersion":1}`), "schema version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeManifest("test", tc.raw)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// FuzzDecodeManifest: whatever a registry sends, decoding returns an
// error or a manifest within every limit; it never panics.
func FuzzDecodeManifest(f *testing.F) {
	f.Add(seedManifest(2, 100))
	f.Add(seedManifest(126, 1))
	f.Add([]byte(`{"schemaVersion":2,"layers":[{"size":-1}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := DecodeManifest("fuzz", raw)
		if err != nil {
			return
		}
		if len(m.Layers) > int(limits.Layers.Max) || m.Config.Size > limits.Config.Max || m.Config.Size < 0 {
			t.Fatalf("accepted %d layers, config %d", len(m.Layers), m.Config.Size)
		}
		total := m.Config.Size
		for _, l := range m.Layers {
			if l.Size < 0 || l.Digest.Algorithm != "sha256" {
				t.Fatalf("accepted layer %+v", l)
			}
			total += l.Size
		}
		if total > limits.PullBytes.Max {
			t.Fatalf("accepted %d bytes", total)
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("c", 64) + `","size":5,"platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		idx, err := DecodeIndex("fuzz", raw)
		if err != nil {
			return
		}
		if d, err := pickChild("fuzz", idx, HostPlatform()); err == nil && !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			t.Fatalf("picked %q", d.MediaType)
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["sha256:`+strings.Repeat("d", 64)+`"]}}`), 1)
	f.Fuzz(func(t *testing.T, raw []byte, layers int) {
		cfg, err := DecodeConfig("fuzz", raw, layers)
		if err != nil {
			if len(raw) > int(limits.Config.Max) && !errors.Is(err, limits.ErrLimit) {
				t.Fatalf("an oversized config refused for another reason: %v", err)
			}
			return
		}
		if len(cfg.RootFS.DiffIDs) != layers {
			t.Fatalf("%d diff IDs for %d layers", len(cfg.RootFS.DiffIDs), layers)
		}
	})
}
