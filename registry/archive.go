package registry

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ds01/ds01/internal/limits"
)

// ImportArchive stores the image of an OCI-layout tar (what `docker save`
// writes on the containerd image store: blobs/sha256/…, index.json) in the
// cache under ref, every blob checked against its digest as it streams by,
// so that an image only a Docker engine holds is read out of it once. It
// returns the manifest's digest (the host platform's, for an index) and
// the bytes of the archive read. A failure leaves no entry for ref; blobs already stored
// stay for `base prune`.
func (c *Cache) ImportArchive(ref string, r io.Reader) (string, int64, error) {
	if _, err := ParseRef(ref); err != nil {
		return "", 0, err
	}
	release, err := c.holdBlobs(false)
	if err != nil {
		return "", 0, err
	}
	defer release()
	var index []byte
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", cr.n, fmt.Errorf("reading the archive of %s: %w", ref, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if err := limits.PullBytes.Check("the archive of "+ref, cr.n+h.Size); err != nil {
			return "", cr.n, err
		}
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				// A blob is never sparse; holes would expand without bound.
				return "", cr.n, fmt.Errorf("archive of %s: %s is a sparse file, not a blob", ref, h.Name)
			}
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case name == "index.json":
			if err := limits.Manifest.Check("index.json in the archive of "+ref, h.Size); err != nil {
				return "", cr.n, err
			}
			if index, err = io.ReadAll(tr); err != nil {
				return "", cr.n, err
			}
		case strings.HasPrefix(name, "blobs/sha256/"):
			dg, err := v1.NewHash("sha256:" + strings.TrimPrefix(name, "blobs/sha256/"))
			if err != nil {
				return "", cr.n, fmt.Errorf("archive of %s: %s is not a blob name", ref, name)
			}
			if ok, _ := c.HasBlob(dg, h.Size, false); ok {
				continue
			}
			if _, err := c.PutBlob(dg, tr); err != nil {
				return "", cr.n, fmt.Errorf("archive of %s: %w", ref, err)
			}
		}
	}
	n := cr.n
	if index == nil {
		return "", n, fmt.Errorf("archive of %s has no index.json: not an OCI image layout", ref)
	}
	idx, err := DecodeIndex("index.json in the archive of "+ref, index)
	if err != nil {
		return "", n, err
	}
	if len(idx.Manifests) != 1 {
		return "", n, fmt.Errorf("archive of %s lists %d images; want one", ref, len(idx.Manifests))
	}
	mdg, err := c.manifestFor(idx.Manifests[0].Digest.String())
	if err != nil {
		return "", n, fmt.Errorf("archive of %s: %w", ref, err)
	}
	img, err := c.blobImage(mdg)
	if err != nil {
		return "", n, fmt.Errorf("archive of %s: %w", ref, err)
	}
	return mdg, n, c.Put(ref, img)
}

// blobImage is the image of a manifest whose blobs are in the cache but
// which no ref names yet (the layout reader finds only what index.json
// lists).
func (c *Cache) blobImage(digest string) (v1.Image, error) {
	raw, err := c.smallBlob(digest)
	if err != nil {
		return nil, err
	}
	m, err := DecodeManifest("manifest "+digest, raw)
	if err != nil {
		return nil, err
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if ok, _ := c.HasBlob(d.Digest, d.Size, false); !ok {
			return nil, fmt.Errorf("manifest %s names %s, which is missing", digest, d.Digest)
		}
	}
	return partial.CompressedToImage(blobCore{c: c, raw: raw, m: m})
}

type blobCore struct {
	c   *Cache
	raw []byte
	m   *v1.Manifest
}

func (b blobCore) RawManifest() ([]byte, error)        { return b.raw, nil }
func (b blobCore) MediaType() (types.MediaType, error) { return b.m.MediaType, nil }
func (b blobCore) RawConfigFile() ([]byte, error)      { return b.c.smallBlob(b.m.Config.Digest.String()) }
func (b blobCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range b.m.Layers {
		if l.Digest == h {
			return blobLayer{c: b.c, d: l}, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in manifest", h)
}

type blobLayer struct {
	c *Cache
	d v1.Descriptor
}

func (l blobLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l blobLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l blobLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l blobLayer) Compressed() (io.ReadCloser, error)  { return l.c.BlobReader(l.d.Digest) }

// smallBlob reads a manifest, index or config from the cache.
func (c *Cache) smallBlob(digest string) ([]byte, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, err
	}
	rc, err := c.BlobReader(h)
	if err != nil {
		return nil, fmt.Errorf("%s is not in ds01's cache: %w", digest, err)
	}
	defer rc.Close()
	return limits.Manifest.ReadAll(digest+" in ds01's cache", rc)
}

// manifestFor is digest when it names a manifest, or the host platform's
// manifest when it names an index.
func (c *Cache) manifestFor(digest string) (string, error) {
	raw, err := c.smallBlob(digest)
	if err != nil {
		return "", err
	}
	var probe struct {
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return "", fmt.Errorf("%s in ds01's cache is not a manifest or an index", digest)
	}
	if probe.Manifests == nil {
		return digest, nil
	}
	m, err := HostManifest(probe.Manifests)
	if err != nil {
		return "", fmt.Errorf("index %s: %w", digest, err)
	}
	return m.Digest.String(), nil
}

// HostManifest picks the host platform's image manifest from an index's.
func HostManifest(manifests []v1.Descriptor) (v1.Descriptor, error) {
	p := HostPlatform()
	for _, m := range manifests {
		if m.Platform != nil && m.Platform.OS == p.OS && m.Platform.Architecture == p.Architecture && m.MediaType.IsImage() {
			return m, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("no %s/%s image among %d manifests", p.OS, p.Architecture, len(manifests))
}

// ImageFor opens a cached image by the digest of its manifest or of an
// index holding it, whose host-platform manifest is taken: on the
// containerd image store an image pulled by an index has the index's
// digest as its ID.
func (c *Cache) ImageFor(digest string) (v1.Image, error) {
	mdg, err := c.manifestFor(digest)
	if err != nil {
		return nil, err
	}
	return c.Image(mdg)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
