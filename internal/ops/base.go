package ops

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/registry"
)

// BasePull is base pull's request.
type BasePull struct {
	Ref      string
	Platform *v1.Platform
	// Events hears of each layer's progress.
	Events func(registry.PullEvent) `json:"-"`
}

// PullBase puts a base into ds01's cache, with id's registry credentials.
func (o *Ops) PullBase(ctx context.Context, id identity.Identity, r BasePull) (registry.PullResult, error) {
	if _, err := registry.ParseRef(r.Ref); err != nil {
		return registry.PullResult{}, err
	}
	cache, err := o.Cache()
	if err != nil {
		return registry.PullResult{}, err
	}
	po := registry.PullOptions{Platform: r.Platform, Events: r.Events}
	if po.Keychain, err = keychain(id); err != nil {
		return registry.PullResult{}, err
	}
	return cache.Pull(ctx, r.Ref, po)
}

// ListBases are the bases in ds01's cache.
func (o *Ops) ListBases() ([]registry.Entry, error) {
	cache, err := o.Cache()
	if err != nil {
		return nil, err
	}
	es, err := cache.Entries()
	if es == nil {
		es = []registry.Entry{}
	}
	return es, err
}

// PruneBases removes the blobs no cached base uses; root's own call only,
// as the cache is every user's builds'.
func (o *Ops) PruneBases(id identity.Identity, dryRun bool) (registry.PruneResult, error) {
	if id.ActsForUser() && !id.Root {
		return registry.PruneResult{}, rootOnly("base prune through sudo would prune root's cache, which every user's builds share: it is for root itself; ds01 prunes nothing a build of yours needs")
	}
	cache, err := o.Cache()
	if err != nil {
		return registry.PruneResult{}, err
	}
	return cache.Prune(dryRun)
}

// PackagePrune says what image prune did to one package image.
type PackagePrune struct {
	Image packages.Image
	// Kept is set, with UsedBy, for an image an image still uses; Err for
	// one that could not be removed.
	Kept bool
	Err  error
}

// PrunePackages removes the shared package images no image uses, of
// those id may judge: root's own call every one, anyone else those whose
// layer their own cache holds. keys, when given, narrow it further.
func (o *Ops) PrunePackages(ctx context.Context, id identity.Identity, keys []string, dryRun bool) ([]PackagePrune, error) {
	if id.ActsForUser() && !id.Root {
		// Through sudo the cache is root's, every user's: it cannot say
		// whose a package image is, nor may a user learn what others use.
		return nil, rootOnly("image prune through sudo would judge the package images of every user's builds: it is for root itself")
	}
	mine, err := o.packageScope(id)
	if err != nil {
		return nil, err
	}
	imgs, err := o.D.Images.Packages.Images(ctx)
	if err != nil {
		return nil, err
	}
	var out []PackagePrune
	for _, p := range imgs {
		if !mine(p.Key()) || len(keys) > 0 && !slices.Contains(keys, p.Key()) {
			continue
		}
		r := PackagePrune{Image: p, Kept: len(p.UsedBy) > 0}
		if !r.Kept && !dryRun {
			r.Err = o.D.Images.Packages.RemoveImage(ctx, p)
		}
		out = append(out, r)
	}
	return out, nil
}

// packageScope says which package images a prune may touch: root's own
// call every one; anyone else's those whose layer their own cache holds
// (packages/req-KEY….json), the ones they built or reused.
func (o *Ops) packageScope(id identity.Identity) (func(key string) bool, error) {
	if id.Root && id.UID == 0 { // root's own call, not sudo nor --user
		return func(string) bool { return true }, nil
	}
	ents, err := os.ReadDir(filepath.Join(o.CacheDir, "packages"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var have []string
	for _, e := range ents {
		if k, ok := strings.CutPrefix(e.Name(), "req-"); ok && strings.HasSuffix(k, ".json") {
			have = append(have, strings.TrimSuffix(k, ".json"))
		}
	}
	return func(key string) bool {
		return key != "" && slices.ContainsFunc(have, func(k string) bool { return strings.HasPrefix(k, key) })
	}, nil
}
