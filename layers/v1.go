package layers

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// uncompressed is a layer stored and shipped as a plain tar: its digest is
// its diff ID. go-containerregistry's tarball layers gzip eagerly to learn
// their digest, which for a multi-GB base tar costs more than everything
// else ds01 does; docker load and registries take plain tars as they are.
type uncompressed struct {
	open   func() (io.ReadCloser, error)
	digest v1.Hash
	size   int64
	mt     types.MediaType // OCI's "tar" unless told
}

var _ v1.Layer = (*uncompressed)(nil)

func (l *uncompressed) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *uncompressed) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *uncompressed) Compressed() (io.ReadCloser, error)   { return l.open() }
func (l *uncompressed) Uncompressed() (io.ReadCloser, error) { return l.open() }
func (l *uncompressed) Size() (int64, error)                 { return l.size, nil }
func (l *uncompressed) MediaType() (types.MediaType, error) {
	if l.mt != "" {
		return l.mt, nil
	}
	return types.OCIUncompressedLayer, nil
}

// ForManifest returns the layer with the plain-tar media type of the
// manifest family it is to join: a Docker schema 2 manifest with an OCI
// layer type is refused by skopeo and some registries.
func ForManifest(l v1.Layer, manifest types.MediaType) v1.Layer {
	u, ok := l.(*uncompressed)
	if !ok {
		return l
	}
	c := *u
	c.mt = types.OCIUncompressedLayer
	if manifest == types.DockerManifestSchema2 {
		c.mt = types.DockerUncompressedLayer
	}
	return &c
}

// FromBytes is a plain-tar layer held in memory, such as the user layer.
func FromBytes(tarball []byte) v1.Layer {
	return &uncompressed{
		open:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarball)), nil },
		digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(tarball))},
		size:   int64(len(tarball)),
	}
}

// FromFile is a plain-tar layer on disk. Its digest is computed once, here,
// by reading the file.
func FromFile(path string) (v1.Layer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("hashing %s: %w", path, err)
	}
	return &uncompressed{
		open:   func() (io.ReadCloser, error) { return os.Open(path) },
		digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))},
		size:   n,
	}, nil
}

// FromFileDigest is a plain-tar layer on disk whose digest is already
// known and checked (a verified cache blob): nothing is read until used.
func FromFileDigest(path string, digest v1.Hash, size int64) v1.Layer {
	return &uncompressed{open: func() (io.ReadCloser, error) { return os.Open(path) }, digest: digest, size: size}
}
