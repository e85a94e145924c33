package registry

import (
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ds01/ds01/internal/limits"
	"github.com/ds01/ds01/layers"
)

// ImportSaved stores the image of a legacy docker-archive (what docker
// save writes on a graphdriver engine before Engine 25: manifest.json and
// a layer.tar per layer, no index.json) in the cache under ref, its
// config byte for byte (so its digest is the engine's image ID) and its
// layers as the plain tars they are, each checked against its diff ID.
// The archive is spooled to a temporary file first: its layers must be
// reached in the order the config lists them.
func (c *Cache) ImportSaved(ref string, r io.Reader) (v1.Image, error) {
	if _, err := ParseRef(ref); err != nil {
		return nil, err
	}
	release, err := c.holdBlobs(false)
	if err != nil {
		return nil, err
	}
	defer release()
	spool, err := os.CreateTemp(c.Dir, ".tmp-save-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	if _, err := io.Copy(spool, limits.Reader(r, limits.PullBytes.Max, func() error { return limits.PullBytes.Check("the docker save of "+ref, -1) })); err != nil {
		return nil, fmt.Errorf("spooling the docker save of %s: %w", ref, err)
	}
	saved, err := tarball.Image(func() (io.ReadCloser, error) { return os.Open(spool.Name()) }, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the docker save of %s: %w", ref, err)
	}
	raw, err := saved.RawConfigFile()
	if err != nil {
		return nil, err
	}
	saves, err := saved.Layers()
	if err != nil {
		return nil, err
	}
	cfg, err := DecodeConfig(ref+" config", raw, len(saves))
	if err != nil {
		return nil, err
	}
	var ls []v1.Layer
	for i, l := range saves {
		h := cfg.RootFS.DiffIDs[i]
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		size, err := c.PutBlob(h, rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %d of the docker save of %s: %w", i, ref, err)
		}
		ls = append(ls, layers.ForManifest(layers.FromFileDigest(c.blobPath(h), h, size), types.OCIManifestSchema1))
	}
	img, err := Compose(raw, types.OCIManifestSchema1, ls)
	if err != nil {
		return nil, err
	}
	// Put finds the layers stored and adds config, manifest and ref.
	return img, c.Put(ref, img)
}
