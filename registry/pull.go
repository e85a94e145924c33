package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ds01/ds01/internal/limits"
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
	// Keychain gives registry credentials; nil is the docker CLI's of
	// this process's user (DefaultKeychain). Root acting for a user gives
	// the user's own (UserKeychain), never root's.
	Keychain authn.Keychain
	// Stall, for tests, replaces the deadlines for an answer to start and
	// for a body to keep delivering (limits.Headers, limits.StallWindow).
	Stall time.Duration
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

func (o PullOptions) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return HostPlatform()
}

func (o PullOptions) remote(ctx context.Context) []remote.Option {
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc),
		remote.WithPlatform(o.platform()), remote.WithTransport(newTransport(o.Transport, o.Stall))}
}

// ErrUnreachable wraps failures to talk to a registry at all.
var ErrUnreachable = errors.New("cannot reach the registry")

// remoteManifest is the image manifest a ref names for a platform.
type remoteManifest struct {
	repo   name.Repository
	digest v1.Hash
	raw    []byte
	m      *v1.Manifest
	desc   *remote.Descriptor
}

// findManifest follows ref through at most limits.IndexDepth indexes to
// the platform's image manifest, each document decoded with ds01's
// limits; go-containerregistry's own walk recurses without bound.
func findManifest(ctx context.Context, p *remote.Puller, r name.Reference, plat v1.Platform) (remoteManifest, error) {
	seen := map[v1.Hash]bool{}
	cur := r
	for depth := 0; ; depth++ {
		desc, err := p.Get(ctx, cur)
		if err != nil {
			if errors.Is(err, limits.ErrLimit) {
				return remoteManifest{}, fmt.Errorf("%s: %w", r, err)
			}
			return remoteManifest{}, fmt.Errorf("%w for %s: %w", ErrUnreachable, cur, err)
		}
		if seen[desc.Digest] {
			return remoteManifest{}, fmt.Errorf("%s: index %s leads back to itself", r, desc.Digest)
		}
		seen[desc.Digest] = true
		switch {
		case desc.MediaType.IsIndex():
			if err := limits.IndexDepth.Check(r.String(), int64(depth+1)); err != nil {
				return remoteManifest{}, err
			}
			idx, err := DecodeIndex(cur.String(), desc.Manifest)
			if err != nil {
				return remoteManifest{}, err
			}
			child, err := pickChild(cur.String(), idx, plat)
			if err != nil {
				return remoteManifest{}, err
			}
			cur = r.Context().Digest(child.Digest.String())
		case desc.MediaType.IsImage():
			m, err := DecodeManifest(cur.String(), desc.Manifest)
			if err != nil {
				return remoteManifest{}, err
			}
			return remoteManifest{repo: r.Context(), digest: desc.Digest, raw: desc.Manifest, m: m, desc: desc}, nil
		default:
			return remoteManifest{}, fmt.Errorf("%s is a %q, not an image or an index", cur, desc.MediaType)
		}
	}
}

func (o PullOptions) find(ctx context.Context, ref string) (*remote.Puller, remoteManifest, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, remoteManifest{}, err
	}
	p, err := remote.NewPuller(o.remote(ctx)...)
	if err != nil {
		return nil, remoteManifest{}, err
	}
	rm, err := findManifest(ctx, p, r, o.platform())
	return p, rm, err
}

// RemoteDigest asks the registry which manifest ref names now, for the
// platform: the check --pull makes before using what is already here.
func RemoteDigest(ctx context.Context, ref string, o PullOptions) (string, error) {
	_, rm, err := o.find(ctx, ref)
	if err != nil {
		return "", err
	}
	return rm.digest.String(), nil
}

// fetchSmall reads a blob the manifest declares with size (a config),
// failing when the registry sends more or less.
func fetchSmall(ctx context.Context, p *remote.Puller, repo name.Repository, d v1.Descriptor) ([]byte, error) {
	input := repo.String() + "@" + d.Digest.String()
	l, err := p.Layer(ctx, repo.Digest(d.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrUnreachable, input, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrUnreachable, input, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(sized(rc, d.Size, input))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", input, err)
	}
	if len(raw) != int(d.Size) {
		return nil, fmt.Errorf("%s: the registry sent %d bytes, the manifest declares %d", input, len(raw), d.Size)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(raw)); got != d.Digest.Hex {
		return nil, fmt.Errorf("%s: the registry sent content with digest sha256:%s", input, got)
	}
	return raw, nil
}

// sized reads at most size bytes of r, failing once r has more: a blob
// whose length lies costs no more than its declared size.
func sized(r io.Reader, size int64, input string) io.Reader {
	return limits.Reader(r, size, func() error {
		return fmt.Errorf("%s: the registry sends more than the %d bytes the manifest declares", input, size)
	})
}

// Pull fetches ref into the cache: manifest, config and every layer the
// cache does not already hold intact, within ds01's limits (see
// internal/limits). Layers present are re-hashed, so a corrupted blob is
// fetched again rather than used; layers are fetched by a few workers,
// each to a temporary file that becomes the blob only once its digest,
// size and uncompressed content (the config's diff ID) are right; the
// first failure stops the others. The ref is recorded last, so a failed
// pull leaves no entry, and nothing that a later pull could mistake for
// whole. A prune of the same cache waits until the pull ends.
func (c *Cache) Pull(ctx context.Context, ref string, o PullOptions) (PullResult, error) {
	release, err := c.holdBlobs(false)
	if err != nil {
		return PullResult{}, err
	}
	defer release()
	mctx, cancel := context.WithTimeout(ctx, limits.Metadata)
	defer cancel()
	p, rm, err := o.find(mctx, ref)
	if err != nil {
		return PullResult{}, err
	}
	res := PullResult{Ref: ref, Digest: rm.digest.String(), Layers: len(rm.m.Layers)}
	rawConfig, err := fetchSmall(mctx, p, rm.repo, rm.m.Config)
	if err != nil {
		return res, err
	}
	cfg, err := DecodeConfig(ref+" config", rawConfig, len(rm.m.Layers))
	if err != nil {
		return res, err
	}
	cancel()
	res.Platform = cfg.OS + "/" + cfg.Architecture
	if cfg.Variant != "" {
		res.Platform += "/" + cfg.Variant
	}
	res.Size = rm.m.Config.Size
	for _, l := range rm.m.Layers {
		res.Size += l.Size
	}
	if err := c.roomFor(ref, rm.m); err != nil {
		return res, err
	}
	o.event(PullEvent{Kind: "layers", Size: res.Size, Layers: rm.m.Layers})
	var n counters
	err = pool(ctx, o.Jobs, len(rm.m.Layers), func(ctx context.Context, i int) error {
		return c.fetchLayer(ctx, p, rm, cfg.RootFS.DiffIDs[i], i, o, &n)
	})
	res.Fetched, res.Reused, res.Refetched = n.fetched.Load(), int(n.reused.Load()), int(n.refetched.Load())
	if err != nil {
		return res, err
	}
	for _, b := range []struct {
		h    v1.Hash
		data []byte
	}{{rm.m.Config.Digest, rawConfig}, {rm.digest, rm.raw}} {
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

func (o PullOptions) event(e PullEvent) {
	if o.Events != nil {
		o.Events(e)
	}
}

type counters struct{ fetched, reused, refetched atomic.Int64 }

// pool runs fn for 0..n-1 on at most jobs workers (4 by default) and
// stops handing out work at the first error, which it returns; the
// context fn gets is cancelled then, so that the others stop too.
func pool(ctx context.Context, jobs, n int, fn func(context.Context, int) error) error {
	if jobs <= 0 {
		jobs = 4
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(jobs, n) {
		wg.Go(func() {
			for i := range work {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel(err) })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return first
}

// fetchLayer brings layer i of rm into the cache unless it is there
// intact: at most its declared size, and its uncompressed content
// checked against diffID within limits.Expansion.
func (c *Cache) fetchLayer(ctx context.Context, p *remote.Puller, rm remoteManifest, diffID v1.Hash, i int, o PullOptions, n *counters) error {
	desc := rm.m.Layers[i]
	input := fmt.Sprintf("layer %d (%s) of %s", i+1, desc.Digest, rm.repo)
	ok, err := c.HasBlob(desc.Digest, desc.Size, true)
	switch {
	case errors.Is(err, ErrCorrupt):
		os.Remove(c.blobPath(desc.Digest))
		n.refetched.Add(1)
	case err != nil:
		return err
	case ok:
		n.reused.Add(1)
		o.event(PullEvent{Kind: "reused", Layer: desc.Digest, Size: desc.Size})
		return nil
	}
	l, err := p.Layer(ctx, rm.repo.Digest(desc.Digest.String()))
	if err != nil {
		return fmt.Errorf("%w for %s: %w", ErrUnreachable, input, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("fetching %s: %w", input, err)
	}
	defer rc.Close()
	u, err := unpack(desc, diffID, input)
	if err != nil {
		return err
	}
	src := io.TeeReader(sized(&progressReader{r: rc, ctx: ctx, fn: func(k int64) {
		n.fetched.Add(k)
		o.event(PullEvent{Kind: "bytes", Layer: desc.Digest, Size: desc.Size, N: k})
	}}, desc.Size, input), u)
	got, err := c.putBlob(desc.Digest, src, func(written int64) error {
		if written != desc.Size {
			return fmt.Errorf("%s: the registry sent %d bytes, the manifest declares %d", input, written, desc.Size)
		}
		return u.finish()
	})
	u.abort()
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) && ctx.Err() != nil {
			return cause // another layer failed first; say why
		}
		if strings.Contains(err.Error(), input) {
			return fmt.Errorf("%w (after %d bytes)", err, got)
		}
		return fmt.Errorf("fetching %s (%d bytes in): %w", input, got, err)
	}
	o.event(PullEvent{Kind: "done", Layer: desc.Digest, Size: desc.Size})
	return nil
}

// roomFor refuses a pull whose layers, as declared, do not fit on the
// cache's filesystem: better before the first byte than at the last.
func (c *Cache) roomFor(ref string, m *v1.Manifest) error {
	need := m.Config.Size
	for _, l := range m.Layers {
		if ok, _ := c.HasBlob(l.Digest, l.Size, false); !ok {
			need += l.Size
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.Dir, &st); err != nil {
		return nil // no figure to go by; the write fails on its own
	}
	if free := int64(st.Bavail) * st.Bsize; need > free {
		return fmt.Errorf("pulling %s needs %d bytes; ds01's cache at %s has %d free (free some with `ds01 base prune`)", ref, need, c.Dir, free)
	}
	return nil
}

// Put stores an image that is not in a registry (built here, say) in the
// cache under ref, every blob checked like a pulled one.
func (c *Cache) Put(ref string, img v1.Image) error {
	if _, err := ParseRef(ref); err != nil {
		return err
	}
	release, err := c.holdBlobs(false)
	if err != nil {
		return err
	}
	defer release()
	rawM, err := img.RawManifest()
	if err != nil {
		return err
	}
	m, err := DecodeManifest(ref, rawM)
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
// any layer: its manifest and config, for their descriptors, found and
// checked as a pull would.
func RemoteImage(ctx context.Context, ref string, o PullOptions) (v1.Image, error) {
	_, rm, err := o.find(ctx, ref)
	if err != nil {
		return nil, err
	}
	img, err := rm.desc.Image()
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrUnreachable, ref, err)
	}
	return img, nil
}

// progressReader reports bytes read and stops when the context ends.
type progressReader struct {
	r   io.Reader
	ctx context.Context
	fn  func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, context.Cause(p.ctx)
	}
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(int64(n))
	}
	return n, err
}
