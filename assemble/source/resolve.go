package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/registry"
)

// ResolveOptions say where a base may come from.
type ResolveOptions struct {
	Cache *registry.Cache
	// Offline never touches the network: the daemon or the cache.
	Offline bool
	// Refresh asks the registry for the ref's current digest and fetches
	// it when what is here differs (--pull).
	Refresh bool
	Pull    registry.PullOptions
	// Log gets a line for each step, when set.
	Log io.Writer
	// LoadProgress, when set, hears of the bytes of a base streamed into
	// the daemon: total once (n < 0 never), then each chunk.
	LoadProgress func(total, n int64)
}

// Resolution says where a base came from.
type Resolution struct {
	From   BaseSource
	Pulled *registry.PullResult
	Loaded int64 // bytes streamed into the daemon to give it the base
	// Full is set on the containerd image store when the engine does not
	// hold the base as ds01's cache has it: the base is sent whole with
	// the new image.
	Full bool
	// Held is set on the containerd image store when the engine holds the
	// base under known descriptors: the new image's archive leaves the
	// base out.
	Held bool
	// Descriptors says where a held base's layer descriptors came from.
	Descriptors DescriptorSource
	// Exported is the bytes of a base read out of the engine into ds01's
	// cache, when no other source knew its descriptors.
	Exported int64
	// Notice is a line for the user about a slow path taken, and why.
	Notice string
}

// ErrOffline is a base that is neither in the daemon nor in the cache
// when the network may not be used.
var ErrOffline = errors.New("not in the Docker daemon nor in ds01's cache, and --offline forbids fetching it")

// Resolve is the one resolver of every command: the image in the local
// daemon; else ds01's cache; else the registry. A base from the cache or
// the registry is streamed into the daemon once, tagged with its ref, so
// that every later build finds it there and sends only its own layer.
func Resolve(ctx context.Context, d *engine.Docker, ref string, o ResolveOptions) (*Base, Resolution, error) {
	loc, err := Locate(ctx, d, ref, o)
	if err != nil {
		return nil, Resolution{}, err
	}
	return Give(ctx, d, loc, o)
}

// Give does what loc says the engine needs to hold the base, and returns
// the base as a build uses it.
func Give(ctx context.Context, d *engine.Docker, loc Location, o ResolveOptions) (*Base, Resolution, error) {
	ref := loc.Ref
	switch {
	case loc.Fetch == FetchNone && d.Store == engine.Containerd:
		return loc.Base, Resolution{From: FromDaemon, Held: true, Descriptors: loc.Descriptors}, nil
	case loc.Fetch == FetchNone:
		if o.Log != nil {
			fmt.Fprintf(o.Log, "base %s: in the Docker daemon (%s)\n", ref, loc.Base.ID)
		}
		attachCachedDigest(o.Cache, ref, loc.Base)
		return loc.Base, Resolution{From: FromDaemon}, nil
	case o.Cache == nil && d.Store == engine.Containerd:
		return nil, Resolution{}, fmt.Errorf("base %s: the containerd image store needs ds01's cache for a base whose layer descriptors are not known", ref)
	case o.Cache == nil:
		return nil, Resolution{}, fmt.Errorf("base %s: %w", ref, ErrNotInDaemon)
	case loc.Fetch == FetchExport:
		return exportBase(ctx, d, ref, loc.held.ID, loc.held.RepoDigests, o)
	case d.Store == engine.Containerd:
		return streamHeld(ctx, d, loc, o)
	}
	img, e, res, err := cachedBase(ctx, ref, loc.Want, o)
	if err != nil {
		return nil, Resolution{}, err
	}
	if o.Log != nil {
		fmt.Fprintf(o.Log, "base %s: streaming %s from the cache into the daemon, once\n", ref, e.Digest)
	}
	st, err := d.LoadWithProgress(ctx, img, ref, nil, o.ProgressFor(img))
	res.Loaded = st.Sent
	if err != nil {
		return nil, Resolution{}, fmt.Errorf("giving the daemon base %s: %w", ref, err)
	}
	o.touch(ref)
	b, err := InDaemon(ctx, d, ref)
	if err != nil {
		return nil, Resolution{}, err
	}
	attachCachedDigest(o.Cache, ref, b)
	return b, res, nil
}

// attachCachedDigest gives a base that ds01 loaded from its cache the
// registry digest it was pulled by, which the daemon does not know, so
// that labels and image IDs do not depend on which build loaded it.
func attachCachedDigest(c *registry.Cache, ref string, b *Base) {
	if c == nil || len(b.RepoDigests) > 0 {
		return
	}
	e, ok, err := c.Lookup(ref)
	if err != nil || !ok {
		return
	}
	img, err := c.Image(e.Digest)
	if err != nil {
		return
	}
	if cn, err := img.ConfigName(); err == nil && cn.String() == b.ID {
		b.RepoDigests = append(b.RepoDigests, ref+"@"+e.Digest)
	}
}

func CachedDigest(c *registry.Cache, ref string) string {
	if c == nil {
		return ""
	}
	e, _, _ := c.Lookup(ref)
	return e.Digest
}

// cachedBase is the base from ds01's cache, pulled into it first when it
// is missing or, with --pull, older than the registry's (want).
func cachedBase(ctx context.Context, ref, want string, o ResolveOptions) (v1.Image, registry.Entry, Resolution, error) {
	res := Resolution{From: FromCache}
	e, ok, err := o.Cache.Lookup(ref)
	if err != nil {
		return nil, e, res, fmt.Errorf("base %s: %w", ref, err)
	}
	var lost error
	if ok {
		// A blob lost from the cache is said as such, and fetched again,
		// rather than blamed on Docker when the load cannot read it.
		if lost = o.Cache.Complete(e.Digest); lost != nil {
			ok = false
		}
	}
	if !ok || (want != "" && e.Digest != want) {
		if o.Offline && lost != nil {
			return nil, e, res, fmt.Errorf("base %s: %w; with --offline it cannot be fetched again: run `ds01 base pull %s` while the registry can be reached", ref, lost, ref)
		}
		if o.Offline {
			return nil, e, res, fmt.Errorf("base %s: %w; run `ds01 base pull %s` while the registry can be reached", ref, ErrOffline, ref)
		}
		if lost != nil && o.Log != nil {
			fmt.Fprintf(o.Log, "base %s: %v; fetching it again\n", ref, lost)
		}
		if o.Log != nil {
			fmt.Fprintf(o.Log, "base %s: pulling into the cache\n", ref)
		}
		pr, err := o.Cache.Pull(ctx, ref, o.Pull)
		if err != nil {
			return nil, e, res, fmt.Errorf("base %s is not in the Docker daemon nor in ds01's cache, and pulling it failed: %w", ref, err)
		}
		res.From, res.Pulled = FromRegistry, &pr
		e = registry.Entry{Ref: ref, Digest: pr.Digest}
	}
	img, err := o.Cache.Image(e.Digest)
	if err != nil {
		return nil, e, res, fmt.Errorf("opening cached %s: %w", ref, err)
	}
	return img, e, res, nil
}

// HeldBase finds the layer descriptors of a base the containerd image
// store holds, without reading a layer, from the first of Describers that
// knows them. ok is false when none does; ins is the engine's image when
// it holds ref (the one --pull wants, if given).
func HeldBase(ctx context.Context, d *engine.Docker, ref, want string, o ResolveOptions) (b *Base, res Resolution, ins *client.ImageInspectResult, ok bool) {
	found, err := d.ImageInspect(ctx, ref)
	if err != nil || (want != "" && want != found.ID) {
		return nil, Resolution{}, nil, false
	}
	b, src, ok := Describe(ctx, Held{Ref: ref, Inspect: found}, Describers(d, o), o)
	if !ok {
		return nil, Resolution{}, &found, false
	}
	return b, Resolution{From: FromDaemon, Held: true, Descriptors: src}, &found, true
}

// streamHeld gives the containerd image store a base from ds01's cache
// (pulled into it first if missing), streamed in once in that form, after
// which the engine holds it under the cached manifest's digest.
func streamHeld(ctx context.Context, d *engine.Docker, loc Location, o ResolveOptions) (*Base, Resolution, error) {
	ref := loc.Ref
	img, e, res, err := cachedBase(ctx, ref, loc.Want, o)
	if err != nil {
		if errors.Is(err, ErrOffline) {
			return nil, Resolution{}, fmt.Errorf("%w (on the containerd image store ds01 needs the base's manifest and layers: `ds01 base pull %s`)", err, ref)
		}
		return nil, Resolution{}, err
	}
	o.touch(ref)
	// The engine lacks ref, or holds another image than --pull wants
	// (Describers found it by the engine's ID otherwise): stream it in.
	b := &Base{Ref: ref, ID: e.Digest, RepoDigests: []string{ref + "@" + e.Digest}, Image: img}
	res.Descriptors = DescriptorSource{Kind: DescStreamed}
	st, err := d.LoadWithProgress(ctx, img, ref, nil, o.ProgressFor(img))
	res.Loaded = st.Sent
	if err != nil {
		return nil, Resolution{}, fmt.Errorf("giving the daemon base %s: %w", ref, err)
	}
	if ins, err := d.ImageInspect(ctx, ref); err == nil && ins.ID == e.Digest {
		res.Held = true
	} else {
		res.Full = true // send the base with the image, and say so
		res.Descriptors = DescriptorSource{}
	}
	return b, res, nil
}

// exportBase reads a base the engine holds, whose layer descriptors no
// other source knows (not loaded by ds01, not in its cache, its registry
// unreachable, containerd's socket not usable), out of the engine once
// with docker save into ds01's cache. The engine's own manifest is then
// in the cache under the engine's ID, and every later build is a delta.
// The engine's image is used, never replaced by another of the same name.
func exportBase(ctx context.Context, d *engine.Docker, ref, id string, repoDigests []string, o ResolveOptions) (*Base, Resolution, error) {
	notice := fmt.Sprintf("base %s: the engine holds it, but no record of ds01's, cache entry, reachable registry or usable containerd socket names its layer descriptors; it is read out of the engine once (docker save) into ds01's cache, and later builds on it are deltas", ref)
	if o.Log != nil {
		fmt.Fprintln(o.Log, notice)
	}
	rc, err := d.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, Resolution{}, fmt.Errorf("base %s: docker save: %w", ref, err)
	}
	_, n, err := o.Cache.ImportArchive(ref, rc)
	rc.Close()
	if err != nil {
		return nil, Resolution{}, fmt.Errorf("base %s: reading it out of the engine into ds01's cache: %w", ref, err)
	}
	img, err := o.Cache.ImageFor(id)
	if err != nil {
		return nil, Resolution{}, fmt.Errorf("base %s: the engine's docker save did not hold its image %s: %w", ref, id, err)
	}
	return &Base{Ref: ref, ID: id, RepoDigests: repoDigests, Image: img}, Resolution{From: FromDaemon, Held: true, Exported: n, Notice: notice,
		Descriptors: DescriptorSource{Kind: DescExported, Detail: strconv.FormatInt(n, 10)}}, nil
}

// ProgressFor turns LoadProgress into a per-chunk callback for streaming
// img, or nil.
func (o ResolveOptions) ProgressFor(img v1.Image) func(int64) {
	if o.LoadProgress == nil {
		return nil
	}
	total := layersSize(img)
	o.LoadProgress(total, 0)
	return func(n int64) { o.LoadProgress(total, n) }
}

// layersSize is the bytes of an image's layers as its manifest lists them.
func layersSize(img v1.Image) int64 {
	total := int64(0)
	if m, err := img.Manifest(); err == nil {
		for _, l := range m.Layers {
			total += l.Size
		}
	}
	return total
}

// touch notes that ref was used (for base list and prune). Failing to
// is said, not fatal: the build does not depend on it.
func (o ResolveOptions) touch(ref string) {
	if err := o.Cache.Touch(ref, time.Now()); err != nil && o.Log != nil {
		fmt.Fprintf(o.Log, "base %s: could not note its last use in ds01's cache: %v\n", ref, err)
	}
}
