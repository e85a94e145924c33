package packages

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/registry"
)

// CachedLayer is the package layer of diff ID h from ds01's cache,
// re-hashed first: a push sends it to a registry that lacks it.
func CachedLayer(c *registry.Cache, h v1.Hash) (v1.Layer, error) {
	p := packagesDir(c, "layers", h.Hex+".tar")
	size, err := registry.VerifyFile(p, h.Hex)
	if err != nil {
		return nil, fmt.Errorf("package layer %s in ds01's cache: %w; build the image again with `ds01 image update` to put it back", h, err)
	}
	return layers.FromFileDigest(p, h, size), nil
}
