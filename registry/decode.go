package registry

import (
	"bytes"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ds01/ds01/internal/limits"
)

// The decoders of what a registry or an archive sends, with ds01's limits:
// what passes them can be pulled, stored and loaded into Docker without
// surprises, and what does not is refused before a layer is fetched.

// DecodeManifest reads an image manifest named input: at most
// limits.Manifest bytes, limits.Layers layers, a config of at most
// limits.Config bytes, every size declared, sha256 digests, and a total
// within limits.PullBytes.
func DecodeManifest(input string, raw []byte) (*v1.Manifest, error) {
	if err := limits.Manifest.Check(input, int64(len(raw))); err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s is not an image manifest: %w", input, err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("%s: manifest schema version %d; ds01 reads version 2", input, m.SchemaVersion)
	}
	if err := limits.Layers.Check(input, int64(len(m.Layers))); err != nil {
		return nil, err
	}
	if err := checkDescriptor(input, "config", m.Config); err != nil {
		return nil, err
	}
	if err := limits.Config.Check(input+" config "+m.Config.Digest.String(), m.Config.Size); err != nil {
		return nil, err
	}
	total := m.Config.Size
	for i, l := range m.Layers {
		if err := checkDescriptor(input, fmt.Sprintf("layer %d", i+1), l); err != nil {
			return nil, err
		}
		if total += l.Size; total > limits.PullBytes.Max || total < 0 {
			return nil, limits.PullBytes.Check(input, total)
		}
	}
	return m, nil
}

func checkDescriptor(input, what string, d v1.Descriptor) error {
	if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 {
		return fmt.Errorf("%s: %s has digest %q; ds01 reads sha256 digests", input, what, d.Digest)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: %s %s declares size %d; a blob must declare its size, which bounds what ds01 fetches", input, what, d.Digest, d.Size)
	}
	return nil
}

// DecodeIndex reads an image index named input, of at most
// limits.Manifest bytes.
func DecodeIndex(input string, raw []byte) (*v1.IndexManifest, error) {
	if err := limits.Manifest.Check(input, int64(len(raw))); err != nil {
		return nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s is not an image index: %w", input, err)
	}
	return idx, nil
}

// DecodeConfig reads the config of m, named input: at most limits.Config
// bytes, one diff ID for every layer of the manifest (Docker refuses the
// load otherwise, after storing the layers).
func DecodeConfig(input string, raw []byte, layers int) (*v1.ConfigFile, error) {
	if err := limits.Config.Check(input, int64(len(raw))); err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s is not an image config: %w", input, err)
	}
	if n := len(cfg.RootFS.DiffIDs); n != layers {
		return nil, fmt.Errorf("%s lists %d layer diff IDs for a manifest of %d layers", input, n, layers)
	}
	return cfg, nil
}

// pickChild is the manifest or index of idx for platform p: the first
// child whose platform matches (a child without one counts as
// linux/amd64, as go-containerregistry has it).
func pickChild(input string, idx *v1.IndexManifest, p v1.Platform) (v1.Descriptor, error) {
	for _, d := range idx.Manifests {
		cp := v1.Platform{OS: "linux", Architecture: "amd64"}
		if d.Platform != nil {
			cp = *d.Platform
		}
		if cp.OS == p.OS && cp.Architecture == p.Architecture && (p.Variant == "" || cp.Variant == p.Variant) && (d.MediaType.IsImage() || d.MediaType.IsIndex()) {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%s has no %s image among its %d manifests", input, p.String(), len(idx.Manifests))
}
