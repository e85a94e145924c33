package registry

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ds01/ds01/internal/limits"
)

// Remote is an image in a registry as image pull takes it: manifest and
// config fetched (within ds01's limits), layers fetched only when read,
// each checked against its digest and declared size as it streams.
type Remote struct {
	Image  v1.Image
	Digest v1.Hash
	Repo   name.Repository
	// Config is the image's config, decoded with ds01's limits.
	Config *v1.ConfigFile
	// Fetched counts the layer bytes read from the registry so far.
	Fetched *atomic.Int64
}

// OpenRemote finds ref's image for the platform and fetches its
// manifest and config; nothing of a layer is read until it is used.
func OpenRemote(ctx context.Context, ref string, o PullOptions) (*Remote, error) {
	mctx, cancel := context.WithTimeout(ctx, limits.Metadata)
	defer cancel()
	p, rm, err := o.find(mctx, ref)
	if err != nil {
		return nil, err
	}
	raw, err := fetchSmall(mctx, p, rm.repo, rm.m.Config)
	if err != nil {
		return nil, err
	}
	cfg, err := DecodeConfig(ref+" config", raw, len(rm.m.Layers))
	if err != nil {
		return nil, err
	}
	for _, l := range rm.m.Layers {
		if l.Size < 0 {
			return nil, fmt.Errorf("%s: layer %s declares no size", ref, l.Digest)
		}
	}
	ri := &remoteImage{ctx: ctx, p: p, rm: rm, rawCfg: raw, diffIDs: cfg.RootFS.DiffIDs, fetched: new(atomic.Int64)}
	img, err := partial.CompressedToImage(ri)
	if err != nil {
		return nil, err
	}
	return &Remote{Image: img, Digest: rm.digest, Repo: rm.repo, Config: cfg, Fetched: ri.fetched}, nil
}

type remoteImage struct {
	ctx     context.Context
	p       *remote.Puller
	rm      remoteManifest
	rawCfg  []byte
	diffIDs []v1.Hash
	fetched *atomic.Int64
}

func (i *remoteImage) RawConfigFile() ([]byte, error)      { return i.rawCfg, nil }
func (i *remoteImage) RawManifest() ([]byte, error)        { return i.rm.raw, nil }
func (i *remoteImage) MediaType() (types.MediaType, error) { return i.rm.desc.MediaType, nil }

func (i *remoteImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for n, d := range i.rm.m.Layers {
		if d.Digest == h {
			return &remoteLayer{i: i, d: d, diffID: i.diffIDs[n]}, nil
		}
	}
	return nil, fmt.Errorf("%s: no layer %s in its manifest", i.rm.repo, h)
}

// remoteLayer is one layer of a Remote, fetched when read.
type remoteLayer struct {
	i      *remoteImage
	d      v1.Descriptor
	diffID v1.Hash
}

// DiffID is the config's: without it go-containerregistry's partial
// would read the whole layer to learn it, which a delta load never must.
func (l *remoteLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

func (l *remoteLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *remoteLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *remoteLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }

// Compressed streams the blob; go-containerregistry checks its digest at
// the end, and sized refuses more than the manifest declares.
func (l *remoteLayer) Compressed() (io.ReadCloser, error) {
	input := l.i.rm.repo.String() + "@" + l.d.Digest.String()
	rl, err := l.i.p.Layer(l.i.ctx, l.i.rm.repo.Digest(l.d.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrUnreachable, input, err)
	}
	rc, err := rl.Compressed()
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %w", ErrUnreachable, input, err)
	}
	return counted{Reader: sized(rc, l.d.Size, input), c: rc, n: l.i.fetched}, nil
}

type counted struct {
	io.Reader
	c io.Closer
	n *atomic.Int64
}

func (c counted) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c counted) Close() error { return c.c.Close() }
