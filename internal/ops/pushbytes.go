package ops

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/registry"
)

// pushable is the image a push sends: the config made again (checked to
// be the image's), the base's layers with their bytes, the package layer
// from the cache and the user layer made again.
func (o *Ops) pushable(ctx context.Context, id identity.Identity, rec record.Record, re *pipeline.Reassembled, dst name.Tag, res *PushResult, ev Events) (v1.Image, error) {
	cache, err := o.Cache()
	if err != nil {
		return nil, err
	}
	base, from, err := o.baseBytes(ctx, id, rec, re.Base, cache, ev)
	if err != nil {
		return nil, err
	}
	if from.notice != "" {
		res.Warnings = append(res.Warnings, from.notice) // told already through ev
	}
	mt, err := base.MediaType()
	if err != nil {
		return nil, err
	}
	ls, err := base.Layers()
	if err != nil {
		return nil, err
	}
	ls, mount := mountable(ls, rec.Base.Ref, dst)
	for _, l := range ls {
		res.Layers = append(res.Layers, describe(l, from.where, mount))
	}
	if re.Packages != nil {
		pl, err := packages.CachedLayer(cache, re.Packages.DiffID)
		if err != nil {
			return nil, err
		}
		pl = layers.ForManifest(pl, mt)
		ls = append(ls, pl)
		res.Layers = append(res.Layers, describe(pl, "ds01's cache (the shared package layer)", ""))
	}
	ul := layers.ForManifest(re.UserLayer, mt)
	ls = append(ls, ul)
	res.Layers = append(res.Layers, describe(ul, "made again from the record", ""))
	raw, err := re.Image.RawConfigFile()
	if err != nil {
		return nil, err
	}
	return registry.Compose(raw, mt, ls)
}

func describe(l v1.Layer, from, mount string) PushedLayer {
	d, _ := l.DiffID()
	size, _ := l.Size()
	return PushedLayer{DiffID: d.String(), Size: size, From: from, Mount: mount}
}

// bytesFrom says where a base's layer bytes were found.
type bytesFrom struct {
	where, notice string
}

// baseBytes is the base as the engine holds it (b), with bytes behind
// its layers: ds01's cache by the digest the record names, else its
// registry by that digest (read only if the registry pushed to lacks a
// layer), else a copy read out of the engine before, else, on the
// containerd store, read out of the engine once now.
func (o *Ops) baseBytes(ctx context.Context, id identity.Identity, rec record.Record, b *source.Base, cache *registry.Cache, ev Events) (v1.Image, bytesFrom, error) {
	want := b.LayerIDs()
	try := func(img v1.Image, err error) (v1.Image, bool) {
		if err != nil {
			return nil, false
		}
		cfg, err := img.ConfigFile()
		return img, err == nil && slices.Equal(cfg.RootFS.DiffIDs, want)
	}
	if dg := rec.Base.Digest; dg != "" {
		if img, ok := try(cache.ImageFor(dg)); ok && cache.Complete(dg) == nil {
			return img, bytesFrom{where: "ds01's cache"}, nil
		}
		if r, err := name.ParseReference(rec.Base.Ref); err == nil {
			kc, err := keychain(id)
			if err != nil {
				return nil, bytesFrom{}, err
			}
			at := r.Context().Digest(dg).String()
			if img, ok := try(registry.RemoteImage(ctx, at, registry.PullOptions{Keychain: kc})); ok {
				return img, bytesFrom{where: "the base's registry (" + at + ")"}, nil
			}
		}
	}
	if img, ok := try(cache.ImageFor(b.ID)); ok {
		return img, bytesFrom{where: "ds01's cache (read out of the engine before)"}, nil
	}
	if e, ok, err := cache.Lookup(exportedRef(b.ID)); err == nil && ok {
		if img, ok := try(cache.Image(e.Digest)); ok && cache.Complete(e.Digest) == nil {
			return img, bytesFrom{where: "ds01's cache (read out of the engine before)"}, nil
		}
	}
	img, from, err := exported(ctx, o.D.Docker, b, cache, ev)
	if err != nil {
		return nil, from, err
	}
	if _, ok := try(img, nil); !ok {
		return nil, from, fmt.Errorf("base %s: the engine's docker save of %s does not have the layers the engine lists for it", b.Ref, b.ID)
	}
	return img, from, nil
}

// exportedRef is the cache's name for a base read out of the engine.
func exportedRef(id string) string {
	return "ds01-exported/base:" + strings.TrimPrefix(id, "sha256:")[:min(32, len(strings.TrimPrefix(id, "sha256:")))]
}

// exported reads the base out of the engine once (docker save of the
// base alone) into ds01's cache.
func exported(ctx context.Context, d *engine.Docker, b *source.Base, cache *registry.Cache, ev Events) (v1.Image, bytesFrom, error) {
	notice := fmt.Sprintf("base %s: neither ds01's cache nor its registry holds it; it is read out of the engine once (docker save of the base alone) into ds01's cache, for registries that lack it", b.Ref)
	ev.warn("%s", notice)
	rc, err := d.ImageSave(ctx, []string{b.ID})
	if err != nil {
		return nil, bytesFrom{}, fmt.Errorf("base %s: docker save: %w", b.Ref, err)
	}
	defer rc.Close()
	img, err := cache.ImportSaved(exportedRef(b.ID), rc)
	if err != nil {
		return nil, bytesFrom{}, fmt.Errorf("base %s: reading it out of the engine into ds01's cache: %w", b.Ref, err)
	}
	return img, bytesFrom{where: "read out of the engine into ds01's cache", notice: notice}, nil
}
