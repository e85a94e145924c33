package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ds01/ds01/layers"
)

// The base cache is an OCI image layout at <cache>/oci. Unlike
// go-containerregistry's layout writer (which skips a blob that exists
// with the right size, and writes in place), every blob here is written to
// a temporary file, checked against its digest, and renamed: a reader
// never sees a partial blob, two writers of one blob both end with the
// same correct file, and an interrupted pull leaves only temporary files,
// which the next pull ignores and prune removes.

// ErrCorrupt is a cached blob whose content does not match its digest.
var ErrCorrupt = errors.New("cached blob does not match its digest")

func (c *Cache) ociDir() string { return filepath.Join(c.Dir, "oci") }

func (c *Cache) blobPath(h v1.Hash) string {
	return filepath.Join(c.ociDir(), "blobs", h.Algorithm, h.Hex)
}

func (c *Cache) initLayout() error {
	if err := os.MkdirAll(filepath.Join(c.ociDir(), "blobs", "sha256"), 0o2775); err != nil {
		return fmt.Errorf("creating cache %s: %w", c.ociDir(), err)
	}
	for name, empty := range map[string]string{"oci-layout": `{"imageLayoutVersion":"1.0.0"}`, "index.json": `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`} {
		// A layout reader wants both, even before the first ref.
		p := filepath.Join(c.ociDir(), name)
		if _, err := os.Stat(p); err != nil {
			if err := WriteFileAtomic(p, []byte(empty)); err != nil {
				return err
			}
		}
	}
	return nil
}

// HasBlob reports whether the blob is cached with the right size; verify
// also re-reads it and checks its digest.
func (c *Cache) HasBlob(h v1.Hash, size int64, verify bool) (bool, error) {
	fi, err := os.Stat(c.blobPath(h))
	if err != nil || (size >= 0 && fi.Size() != size) {
		return false, nil
	}
	if !verify {
		return true, nil
	}
	f, err := os.Open(c.blobPath(h))
	if err != nil {
		return false, nil
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return false, err
	}
	if hex.EncodeToString(d.Sum(nil)) != h.Hex {
		return false, fmt.Errorf("%s: %w", h, ErrCorrupt)
	}
	return true, nil
}

// PutBlob stores r under digest h, checking it; it returns the bytes
// written. Nothing appears under the blob's name unless it is whole and
// right.
func (c *Cache) PutBlob(h v1.Hash, r io.Reader) (int64, error) { return c.putBlob(h, r, nil) }

// putBlob is PutBlob with a last check before the blob takes its name:
// verify gets the bytes written.
func (c *Cache) putBlob(h v1.Hash, r io.Reader, verify func(int64) error) (int64, error) {
	if h.Algorithm != "sha256" {
		return 0, fmt.Errorf("blob %s: only sha256 digests are supported", h)
	}
	if err := c.initLayout(); err != nil {
		return 0, err
	}
	tmp, err := CreateAtomic(c.blobPath(h), 0o664)
	if err != nil {
		return 0, err
	}
	d := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, d), r)
	if err == nil && verify != nil {
		err = verify(n)
	}
	if got := hex.EncodeToString(d.Sum(nil)); err == nil && got != h.Hex {
		err = fmt.Errorf("blob %s: received content with digest sha256:%s", h, got)
	}
	if err != nil {
		tmp.Abort()
		return n, err
	}
	return n, tmp.Commit()
}

// BlobReader opens a cached blob.
func (c *Cache) BlobReader(h v1.Hash) (io.ReadCloser, error) { return os.Open(c.blobPath(h)) }

// Entry is one base in the cache: a ref and the manifest it resolved to.
type Entry struct {
	Ref      string    `json:"ref"`
	Digest   string    `json:"digest"` // the image manifest's
	Size     int64     `json:"size"`   // config and layers, compressed
	LastUsed time.Time `json:"last_used"`
	Platform string    `json:"platform,omitempty"`
}

// refs is <cache>/oci/refs.json: ref → entry. index.json is kept in step
// for OCI tools; refs.json holds what ds01 needs beside it.
func (c *Cache) refsPath() string { return filepath.Join(c.ociDir(), "refs.json") }

// withLock runs fn holding an exclusive lock on the cache's refs, so that
// concurrent ds01 processes of any user update them one at a time.
func (c *Cache) withLock(fn func(map[string]Entry) (bool, error)) error {
	if err := c.initLayout(); err != nil {
		return err
	}
	lf, err := os.OpenFile(filepath.Join(c.ociDir(), ".lock"), os.O_CREATE|os.O_RDWR, 0o664)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking the cache: %w", err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	refs := map[string]Entry{}
	if data, err := os.ReadFile(c.refsPath()); err == nil {
		if err := json.Unmarshal(data, &refs); err != nil {
			return fmt.Errorf("reading %s: %w (remove it to start the cache's index afresh)", c.refsPath(), err)
		}
	}
	changed, err := fn(refs)
	if err != nil || !changed {
		return err
	}
	data, err := json.MarshalIndent(refs, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(c.refsPath(), data); err != nil {
		return err
	}
	return c.writeIndex(refs)
}

// writeIndex rewrites index.json from the refs, for OCI tools.
func (c *Cache) writeIndex(refs map[string]Entry) error {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	keys := make([]string, 0, len(refs))
	for k := range refs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e := refs[k]
		h, err := v1.NewHash(e.Digest)
		if err != nil {
			continue
		}
		fi, err := os.Stat(c.blobPath(h))
		if err != nil {
			continue
		}
		raw, _ := os.ReadFile(c.blobPath(h))
		mt := types.OCIManifestSchema1
		var m struct {
			MediaType types.MediaType `json:"mediaType"`
		}
		if json.Unmarshal(raw, &m) == nil && m.MediaType != "" {
			mt = m.MediaType
		}
		idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: mt, Size: fi.Size(), Digest: h,
			Annotations: map[string]string{"org.opencontainers.image.ref.name": k}})
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(c.ociDir(), "index.json"), data)
}

// Lookup finds a ref in the cache.
func (c *Cache) Lookup(ref string) (Entry, bool, error) {
	var e Entry
	var ok bool
	err := c.withLock(func(refs map[string]Entry) (bool, error) {
		e, ok = refs[ref]
		return false, nil
	})
	if err != nil {
		// A lock or read failure is not an empty cache: the caller would
		// pull again, or report a base missing that is there.
		return Entry{}, false, fmt.Errorf("reading ds01's cache entries: %w", err)
	}
	return e, ok, nil
}

// Entries lists the cached bases.
func (c *Cache) Entries() ([]Entry, error) {
	var out []Entry
	err := c.withLock(func(refs map[string]Entry) (bool, error) {
		for _, e := range refs {
			out = append(out, e)
		}
		return false, nil
	})
	slices.SortFunc(out, func(a, b Entry) int {
		if a.Ref < b.Ref {
			return -1
		}
		if a.Ref > b.Ref {
			return 1
		}
		return 0
	})
	return out, err
}

// Touch records a use of a ref.
func (c *Cache) Touch(ref string, now time.Time) error {
	return c.withLock(func(refs map[string]Entry) (bool, error) {
		e, ok := refs[ref]
		if !ok {
			return false, nil
		}
		e.LastUsed = now.UTC()
		refs[ref] = e
		return true, nil
	})
}

// Image opens a cached image by manifest digest. Its layers are read from
// the cache lazily.
func (c *Cache) Image(digest string) (v1.Image, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, err
	}
	p, err := layout.FromPath(c.ociDir())
	if err != nil {
		return nil, err
	}
	img, err := p.Image(h)
	if err != nil {
		return nil, err
	}
	return cachedImage{Image: img, c: c}, nil
}

// cachedImage serves plain-tar layers (OCI "tar" media type) as they are:
// go-containerregistry's layout reader takes every blob for gzip.
type cachedImage struct {
	v1.Image
	c *Cache
}

func (i cachedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for n, l := range ls {
		out[n] = i.plain(l)
	}
	return out, nil
}

func (i cachedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return i.plain(l), nil
}

func (i cachedImage) plain(l v1.Layer) v1.Layer {
	mt, err := l.MediaType()
	if err != nil || (mt != types.OCIUncompressedLayer && mt != types.DockerUncompressedLayer) {
		return l
	}
	d, err1 := l.Digest()
	size, err2 := l.Size()
	if err1 != nil || err2 != nil {
		return l
	}
	return layers.FromFileDigest(i.c.blobPath(d), d, size)
}

// ErrPullUnderWay is a prune refused because a pull, import or put into
// the same cache is writing blobs that no ref names yet.
var ErrPullUnderWay = errors.New("a pull into ds01's cache is under way, whose blobs no ref names yet; run `ds01 base prune` again when it has ended")

// holdBlobs takes the cache's blob lock: shared for a writer of blobs
// (a pull, an import), which others may hold at once; exclusive for a
// prune, which is refused rather than made to wait while a writer holds
// it, since the writer may take minutes. Without it, a prune deletes
// the blobs of a pull under way (no ref names them until its end).
func (c *Cache) holdBlobs(exclusive bool) (release func(), err error) {
	if err := c.initLayout(); err != nil {
		return nil, err
	}
	p := filepath.Join(c.ociDir(), ".blobs.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o664)
	if err != nil {
		return nil, fmt.Errorf("opening the cache's lock %s: %w", p, err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX | syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrPullUnderWay
		}
		return nil, fmt.Errorf("locking the cache's blobs: %w", err)
	}
	return func() { f.Close() }, nil
}

// ErrMissingBlob is a cached base whose blob is gone (a prune of an
// older ds01, a disk problem, someone's rm).
var ErrMissingBlob = errors.New("a blob of the base is missing from ds01's cache")

// Complete checks that every blob of the cached image is present with its
// size, so that a lost one is reported as what it is, before anything is
// streamed into Docker.
func (c *Cache) Complete(digest string) error {
	img, err := c.Image(digest)
	if err != nil {
		return fmt.Errorf("%s: %w (%v)", digest, ErrMissingBlob, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("%s: %w (%v)", digest, ErrMissingBlob, err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if ok, _ := c.HasBlob(d.Digest, d.Size, false); !ok {
			return fmt.Errorf("%s: %w: %s (%d bytes)", digest, ErrMissingBlob, d.Digest, d.Size)
		}
	}
	return nil
}

// PruneResult lists what Prune removed, or would.
type PruneResult struct {
	Blobs []string
	Bytes int64
}

// Prune removes blobs no cached ref uses, and temporary files that a pull
// left more than an hour ago. It is refused while a pull writes blobs
// into the cache (ErrPullUnderWay).
func (c *Cache) Prune(dryRun bool) (PruneResult, error) {
	var res PruneResult
	release, err := c.holdBlobs(true)
	if err != nil {
		return res, err
	}
	defer release()
	err = c.withLock(func(refs map[string]Entry) (bool, error) {
		used := map[string]bool{}
		for _, e := range refs {
			img, err := c.Image(e.Digest)
			if err != nil {
				continue // its blobs are unused then
			}
			used[e.Digest] = true
			if cn, err := img.ConfigName(); err == nil {
				used[cn.String()] = true
			}
			if m, err := img.Manifest(); err == nil {
				for _, l := range m.Layers {
					used[l.Digest.String()] = true
				}
			}
		}
		dir := filepath.Join(c.ociDir(), "blobs", "sha256")
		ents, err := os.ReadDir(dir)
		if err != nil {
			return false, nil
		}
		for _, de := range ents {
			fi, err := de.Info()
			if err != nil {
				continue
			}
			name := de.Name()
			stale := len(name) > 5 && name[:5] == ".tmp-" && time.Since(fi.ModTime()) > time.Hour
			if !stale && (name[0] == '.' || used["sha256:"+name]) {
				continue
			}
			res.Blobs = append(res.Blobs, name)
			res.Bytes += fi.Size()
			if !dryRun {
				os.Remove(filepath.Join(dir, name))
			}
		}
		return false, nil
	})
	return res, err
}
