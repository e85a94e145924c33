package source

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/registry"
)

// Held is a base the containerd image store holds: its ID is its manifest
// digest and its layers are kept under exactly the descriptors that
// manifest lists, which the Docker API does not show.
type Held struct {
	Ref     string
	Inspect client.ImageInspectResult
}

// A Describer is one place that may know the layer descriptors of a held
// base. It returns the base as that place knows it, or ErrUnknown.
type Describer interface {
	Describe(ctx context.Context, h Held) (v1.Image, DescriptorSource, error)
}

// ErrUnknown is a describer that does not know a base.
var ErrUnknown = errors.New("layer descriptors not known here")

// Describers are the places tried in order, cheapest and surest first:
// ds01's own record on an image it loaded, the manifest in ds01's cache
// whose digest is the engine's ID, the registry by the digest the engine
// pulled it by, and containerd's content store when its socket may be
// used.
func Describers(d *engine.Docker, o ResolveOptions) []Describer {
	ds := []Describer{recordDescriber{d: d}}
	if o.Cache != nil {
		ds = append(ds, cacheDescriber{cache: o.Cache})
	}
	if !o.Offline {
		ds = append(ds, registryDescriber{pull: o.Pull})
	}
	if usableSocket(d.ContainerdSocket) {
		ds = append(ds, contentStoreDescriber{socket: d.ContainerdSocket})
	}
	return ds
}

// recordDescriber reads the ds01.layers label of an image ds01 loaded.
type recordDescriber struct{ d *engine.Docker }

func (r recordDescriber) Describe(ctx context.Context, h Held) (v1.Image, DescriptorSource, error) {
	b, err := fromInspect(ctx, r.d, h.Ref, h.Inspect)
	if err != nil {
		return nil, DescriptorSource{}, err
	}
	if !b.Described() {
		return nil, DescriptorSource{}, ErrUnknown
	}
	return b.Image, DescriptorSource{Kind: DescRecord}, nil
}

// cacheDescriber finds the manifest in ds01's cache with the engine's ID.
type cacheDescriber struct{ cache *registry.Cache }

func (c cacheDescriber) Describe(_ context.Context, h Held) (v1.Image, DescriptorSource, error) {
	img, err := c.cache.ImageFor(h.Inspect.ID)
	if err != nil {
		return nil, DescriptorSource{}, fmt.Errorf("%w: %v", ErrUnknown, err)
	}
	return img, DescriptorSource{Kind: DescCacheByID}, nil
}

// registryDescriber asks the registry by the digest the engine pulled the
// base by, so that go-containerregistry checks what the registry sends
// against the engine's ID; an index (a multi-arch base, whose index digest
// is the engine's ID) gives the host platform's image.
type registryDescriber struct{ pull registry.PullOptions }

// registryAsk bounds the first question to a registry: a server that lost
// its network without --offline goes on to the next describer rather than
// waiting out TCP.
const registryAsk = 15 * time.Second

func (r registryDescriber) Describe(ctx context.Context, h Held) (v1.Image, DescriptorSource, error) {
	var errs []error
	for _, rd := range h.Inspect.RepoDigests {
		if !strings.HasSuffix(rd, "@"+h.Inspect.ID) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, registryAsk)
		_, err := registry.RemoteDigest(rctx, rd, r.pull)
		cancel()
		var img v1.Image
		if err == nil {
			img, err = registry.RemoteImage(ctx, rd, r.pull) // keeps ctx for what it fetches later
		}
		if err == nil {
			return img, DescriptorSource{Kind: DescRegistry, Detail: rd}, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, DescriptorSource{}, ErrUnknown
	}
	return nil, DescriptorSource{}, fmt.Errorf("its registry: %w", errors.Join(errs...))
}

// contentStoreDescriber reads the manifest from containerd's content store.
type contentStoreDescriber struct{ socket string }

func (c contentStoreDescriber) Describe(ctx context.Context, h Held) (v1.Image, DescriptorSource, error) {
	img, err := contentStoreImage(ctx, c.socket, h.Inspect.ID)
	if err != nil {
		return nil, DescriptorSource{}, fmt.Errorf("containerd's content store: %w", err)
	}
	return img, DescriptorSource{Kind: DescContentStore, Detail: c.socket}, nil
}

// Describe tries each describer in turn for the held base; ok is false
// when none knows it. What a describer that failed had to say goes to the
// log, unless it merely did not know.
func Describe(ctx context.Context, h Held, ds []Describer, o ResolveOptions) (*Base, DescriptorSource, bool) {
	for _, d := range ds {
		img, src, err := d.Describe(ctx, h)
		if err == nil {
			digests := h.Inspect.RepoDigests
			if src.Kind == DescRegistry {
				digests = []string{src.Detail}
			}
			return &Base{Ref: h.Ref, ID: h.Inspect.ID, RepoDigests: digests, Image: img}, src, true
		}
		if o.Log != nil && !errors.Is(err, ErrUnknown) {
			fmt.Fprintf(o.Log, "base %s: not from %v\n", h.Ref, err)
		}
	}
	return nil, DescriptorSource{}, false
}
