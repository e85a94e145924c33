package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Compose is the image of exactly rawConfig and ls, in a manifest of
// type mt: the layers are kept as given (a remote.MountableLayer stays
// one, which go-containerregistry's partial wrappers would hide), and
// the config's bytes are never re-encoded, so the image keeps its ID.
func Compose(rawConfig []byte, mt types.MediaType, ls []v1.Layer) (v1.Image, error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("the config to push: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(ls) {
		return nil, fmt.Errorf("the config lists %d layers, and %d are given", len(cfg.RootFS.DiffIDs), len(ls))
	}
	ct := types.OCIConfigJSON
	if mt == types.DockerManifestSchema2 {
		ct = types.DockerConfigJSON
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: mt, Config: v1.Descriptor{
		MediaType: ct, Size: int64(len(rawConfig)), Digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(rawConfig))},
	}}
	for i, l := range ls {
		d, err := v1.Descriptor{}, error(nil)
		if d.Digest, err = l.Digest(); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if d.Size, err = l.Size(); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if d.MediaType, err = l.MediaType(); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		m.Layers = append(m.Layers, d)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &composed{raw: raw, m: &m, rawCfg: rawConfig, cfg: cfg, ls: ls}, nil
}

type composed struct {
	raw, rawCfg []byte
	m           *v1.Manifest
	cfg         *v1.ConfigFile
	ls          []v1.Layer
}

var _ v1.Image = (*composed)(nil)

func (c *composed) Layers() ([]v1.Layer, error)         { return c.ls, nil }
func (c *composed) MediaType() (types.MediaType, error) { return c.m.MediaType, nil }
func (c *composed) Size() (int64, error)                { return int64(len(c.raw)), nil }
func (c *composed) ConfigName() (v1.Hash, error)        { return c.m.Config.Digest, nil }
func (c *composed) ConfigFile() (*v1.ConfigFile, error) { return c.cfg.DeepCopy(), nil }
func (c *composed) RawConfigFile() ([]byte, error)      { return c.rawCfg, nil }
func (c *composed) Manifest() (*v1.Manifest, error)     { return c.m.DeepCopy(), nil }
func (c *composed) RawManifest() ([]byte, error)        { return c.raw, nil }
func (c *composed) Digest() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(c.raw))}, nil
}

func (c *composed) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for i, d := range c.m.Layers {
		if d.Digest == h {
			return c.ls[i], nil
		}
	}
	return nil, fmt.Errorf("no layer %s in the image", h)
}

func (c *composed) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for i, d := range c.cfg.RootFS.DiffIDs {
		if d == h {
			return c.ls[i], nil
		}
	}
	return nil, fmt.Errorf("no layer with diff ID %s in the image", h)
}
