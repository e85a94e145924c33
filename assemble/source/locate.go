package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/registry"
)

// Fetch is what giving the engine a base takes before a build can use it.
type Fetch int

const (
	// FetchNone: the engine holds the base as a build can use it.
	FetchNone Fetch = iota
	// FetchStream: the base is streamed into the engine once from ds01's
	// cache, pulled into the cache first when it is not there.
	FetchStream
	// FetchExport: the containerd store holds the base under descriptors
	// no source knows; it is read out of the engine once into the cache.
	FetchExport
)

// Location is where a base is, found without changing anything: the read
// half of Resolve, and what a dry run reports.
type Location struct {
	Ref string
	// Want is the registry's digest of Ref, asked for with --pull.
	Want string
	// Fetch is what Resolve does first; with FetchNone, Base is the base.
	Fetch Fetch
	Base  *Base
	// Descriptors names where a held base's descriptors come from (the
	// containerd store).
	Descriptors DescriptorSource
	// Cached is the digest ds01's cache holds Ref at, if any; Pull says
	// a stream would pull it from its registry first.
	Cached string
	Pull   bool

	held *client.ImageInspectResult // the engine's image, for an export
}

// Locate finds where ref is for a build on d. It reads the engine, the
// cache and (with Refresh) the registry's digest, and changes nothing.
func Locate(ctx context.Context, d *engine.Docker, ref string, o ResolveOptions) (Location, error) {
	loc := Location{Ref: ref}
	if _, err := registry.ParseRef(ref); err != nil {
		return loc, err
	}
	if o.Refresh && !o.Offline {
		dig, err := registry.RemoteDigest(ctx, ref, o.Pull)
		if err != nil {
			return loc, err
		}
		loc.Want = dig
		if o.Log != nil {
			fmt.Fprintf(o.Log, "registry: %s is %s\n", ref, dig)
		}
	}
	if d.Store == engine.Containerd {
		b, res, ins, ok := HeldBase(ctx, d, ref, loc.Want, o)
		switch {
		case ok:
			loc.Base, loc.Descriptors = b, res.Descriptors
			return loc, nil
		case ins != nil && o.Cache != nil:
			loc.Fetch, loc.held = FetchExport, ins
			return loc, nil
		}
	} else {
		b, err := InDaemon(ctx, d, ref)
		switch {
		case err == nil && (loc.Want == "" || b.Digest() == loc.Want || CachedDigest(o.Cache, ref) == loc.Want):
			loc.Base = b
			return loc, nil
		case err != nil && !errors.Is(err, ErrNotInDaemon):
			return loc, err
		}
	}
	loc.Fetch = FetchStream
	loc.Cached = CachedDigest(o.Cache, ref)
	loc.Pull = loc.Cached == "" || (loc.Want != "" && loc.Cached != loc.Want)
	return loc, nil
}
