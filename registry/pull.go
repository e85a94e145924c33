package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PullOptions tune a pull.
type PullOptions struct {
	// Platform picks an image from a multi-arch index; nil is the host's.
	Platform *v1.Platform
	// Jobs is how many layers are fetched at once (default 4).
	Jobs int
	// Events, when set, hears of each layer: found intact in the cache,
	// or fetched, chunk by chunk. It is called from several goroutines.
	Events func(PullEvent)
	// Transport is for tests; nil uses the default.
	Transport http.RoundTripper
}

// PullEvent is one step of a pull, for progress displays.
type PullEvent struct {
	Layer  v1.Hash
	Size   int64
	Kind   string // "layers" (first, Size = total), "reused", "bytes" (N more), "done"
	N      int64
	Layers []v1.Descriptor // with "layers"
}

// PullResult says what a pull did.
type PullResult struct {
	Ref       string
	Digest    string // the image manifest's
	Size      int64  // config and layers as stored
	Layers    int
	Fetched   int64 // blob bytes that crossed the network
	Reused    int   // layers already in the cache, checked
	Refetched int   // layers in the cache found corrupt and fetched again
	Platform  string
}

// HostPlatform is the platform of this machine (linux/amd64 on the GPU
// servers).
func HostPlatform() v1.Platform { return v1.Platform{OS: "linux", Architecture: runtime.GOARCH} }

// ParseRef reads an image reference; registries on loopback and private
// addresses are spoken to over plain HTTP (go-containerregistry's rule).
func ParseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference (registry/repository:tag or @sha256:…): %w", ref, err)
	}
	return r, nil
}

func (o PullOptions) remote(ctx context.Context) []remote.Option {
	p := HostPlatform()
	if o.Platform != nil {
		p = *o.Platform
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithPlatform(p)}
	if o.Transport != nil {
		opts = append(opts, remote.WithTransport(o.Transport))
	}
	return opts
}

// ErrUnreachable wraps failures to talk to a registry at all.
var ErrUnreachable = errors.New("cannot reach the registry")

// RemoteDigest asks the registry which manifest ref names now, for the
// platform: the check --pull makes before using what is already here.
func RemoteDigest(ctx context.Context, ref string, o PullOptions) (string, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	img, err := remote.Image(r, o.remote(ctx)...)
	if err != nil {
		return "", fmt.Errorf("%w for %s: %v", ErrUnreachable, ref, err)
	}
	d, err := img.Digest()
	return d.String(), err
}

// Pull fetches ref into the cache: manifest, config and every layer the
// cache does not already hold intact. Layers present are re-hashed, so a
// corrupted blob is fetched again rather than used; layers are fetched in
// parallel, each to a temporary file that becomes the blob only once its
// digest is right. The ref is recorded last, so a failed pull leaves no
// entry, and nothing that a later pull could mistake for whole.
func (c *Cache) Pull(ctx context.Context, ref string, o PullOptions) (PullResult, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return PullResult{}, err
	}
	img, err := remote.Image(r, o.remote(ctx)...)
	if err != nil {
		return PullResult{}, fmt.Errorf("%w for %s: %v", ErrUnreachable, ref, err)
	}
	res := PullResult{Ref: ref}
	digest, err := img.Digest()
	if err != nil {
		return res, err
	}
	res.Digest = digest.String()
	rawManifest, err := img.RawManifest()
	if err != nil {
		return res, err
	}
	m, err := img.Manifest()
	if err != nil {
		return res, err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return res, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return res, err
	}
	res.Platform = cfg.OS + "/" + cfg.Architecture
	if cfg.Variant != "" {
		res.Platform += "/" + cfg.Variant
	}
	res.Layers = len(m.Layers)
	res.Size = m.Config.Size
	for _, l := range m.Layers {
		res.Size += l.Size
	}

	event := func(e PullEvent) {
		if o.Events != nil {
			o.Events(e)
		}
	}
	event(PullEvent{Kind: "layers", Size: res.Size, Layers: m.Layers})
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	var (
		fetched   atomic.Int64
		reused    atomic.Int64
		refetched atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		firstErr  error
	)
	sem := make(chan struct{}, jobs)
	for _, desc := range m.Layers {
		wg.Add(1)
		go func(desc v1.Descriptor) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			fail := func(err error) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			ok, err := c.HasBlob(desc.Digest, desc.Size, true)
			if errors.Is(err, ErrCorrupt) {
				os.Remove(c.blobPath(desc.Digest))
				refetched.Add(1)
			} else if err != nil {
				fail(err)
				return
			} else if ok {
				reused.Add(1)
				event(PullEvent{Kind: "reused", Layer: desc.Digest, Size: desc.Size})
				return
			}
			l, err := img.LayerByDigest(desc.Digest)
			if err != nil {
				fail(err)
				return
			}
			rc, err := l.Compressed()
			if err != nil {
				fail(fmt.Errorf("fetching layer %s of %s: %w", desc.Digest, ref, err))
				return
			}
			defer rc.Close()
			n, err := c.PutBlob(desc.Digest, &progressReader{r: rc, ctx: ctx, fn: func(k int64) {
				fetched.Add(k)
				event(PullEvent{Kind: "bytes", Layer: desc.Digest, Size: desc.Size, N: k})
			}})
			if err != nil {
				fail(fmt.Errorf("fetching layer %s of %s (%d bytes in): %w", desc.Digest, ref, n, err))
				return
			}
			event(PullEvent{Kind: "done", Layer: desc.Digest, Size: desc.Size})
		}(desc)
	}
	wg.Wait()
	res.Fetched, res.Reused, res.Refetched = fetched.Load(), int(reused.Load()), int(refetched.Load())
	if firstErr != nil {
		return res, firstErr
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return res, err
	}
	for _, b := range []struct {
		h    v1.Hash
		data []byte
	}{{cfgName, rawConfig}, {digest, rawManifest}} {
		if ok, _ := c.HasBlob(b.h, int64(len(b.data)), true); !ok {
			if _, err := c.PutBlob(b.h, bytes.NewReader(b.data)); err != nil {
				return res, err
			}
		}
	}
	now := time.Now().UTC()
	err = c.withLock(func(refs map[string]Entry) (bool, error) {
		refs[ref] = Entry{Ref: ref, Digest: res.Digest, Size: res.Size, LastUsed: now, Platform: res.Platform}
		return true, nil
	})
	return res, err
}

// progressReader reports bytes read and stops when the context ends.
type progressReader struct {
	r   io.Reader
	ctx context.Context
	fn  func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(int64(n))
	}
	return n, err
}

// Put stores an image that is not in a registry (built here, say) in the
// cache under ref, every blob checked like a pulled one.
func (c *Cache) Put(ref string, img v1.Image) error {
	if _, err := ParseRef(ref); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, _ := l.Size()
		if ok, _ := c.HasBlob(d, size, false); ok {
			continue
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = c.PutBlob(d, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	rawM, err := img.RawManifest()
	if err != nil {
		return err
	}
	cn, _ := img.ConfigName()
	dg, _ := img.Digest()
	for _, b := range []struct {
		h    v1.Hash
		data []byte
	}{{cn, rawCfg}, {dg, rawM}} {
		if _, err := c.PutBlob(b.h, bytes.NewReader(b.data)); err != nil {
			return err
		}
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	cfg, _ := img.ConfigFile()
	plat := ""
	if cfg != nil {
		plat = cfg.OS + "/" + cfg.Architecture
	}
	return c.withLock(func(refs map[string]Entry) (bool, error) {
		refs[ref] = Entry{Ref: ref, Digest: dg.String(), Size: size, LastUsed: time.Now().UTC(), Platform: plat}
		return true, nil
	})
}

// RemoteImage opens ref (a tag or digest) in its registry without fetching
// any layer: its manifest and config, for their descriptors.
func RemoteImage(ctx context.Context, ref string, o PullOptions) (v1.Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, o.remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %v", ErrUnreachable, ref, err)
	}
	return img, nil
}
