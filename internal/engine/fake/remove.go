package fake

import (
	"context"
	"strings"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
)

// ImageRemove removes a reference or an image as the daemon's image
// delete does: a tag is untagged, and the image goes with its last
// reference unless a container uses it; an ID removes the image, refused
// (a conflict) while another repository's tag or a container refers to
// it, unless Force; a running container's image is never removed.
func (e *Engine) ImageRemove(ctx context.Context, ref string, options client.ImageRemoveOptions) (client.ImageRemoveResult, error) {
	e.called("ImageRemove")
	defer e.mu.Unlock()
	im, err := e.lookup(ref)
	if err != nil {
		return client.ImageRemoveResult{}, err
	}
	var recs []image.DeleteResponse
	quiet := false
	tags, digests := e.refsOf(im.id)
	refs := append(tags, digests...)
	if key, named := familiar(ref); named && e.tags[key] == im.id {
		if users := e.usersOf(im.id); !options.Force && singleRepository(refs) && len(users) > 0 {
			return client.ImageRemoveResult{}, conflict("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, short(users[0]), short(im.id))
		}
		delete(e.tags, key)
		recs = append(recs, image.DeleteResponse{Untagged: key})
		if tags, digests := e.refsOf(im.id); len(tags)+len(digests) > 0 {
			return client.ImageRemoveResult{Items: recs}, nil
		}
		quiet = true
	} else if singleRepository(refs) {
		if c := e.deleteConflict(im, !options.Force, false); c != nil {
			return client.ImageRemoveResult{}, c
		}
		recs = append(recs, e.untagAll(im.id)...)
	}
	if c := e.deleteConflict(im, !options.Force, !options.Force); c != nil {
		if quiet {
			return client.ImageRemoveResult{Items: recs}, nil
		}
		return client.ImageRemoveResult{}, c
	}
	recs = append(recs, e.untagAll(im.id)...)
	delete(e.images, im.id)
	recs = append(recs, image.DeleteResponse{Deleted: im.id})
	e.gc()
	return client.ImageRemoveResult{Items: recs}, nil
}

// deleteConflict is what keeps an image: a running container always; a
// stopped one unless forced (soft); any reference left when refs is set.
func (e *Engine) deleteConflict(im *held, soft, refs bool) error {
	for _, id := range e.usersOf(im.id) {
		if e.containers[id].running() {
			return conflict("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", short(im.id), short(id))
		}
	}
	if t, d := e.refsOf(im.id); refs && len(t)+len(d) > 0 {
		return conflict("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", short(im.id))
	}
	if users := e.usersOf(im.id); soft && len(users) > 0 {
		return conflict("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", short(im.id), short(users[0]))
	}
	return nil
}

func (e *Engine) untagAll(id string) []image.DeleteResponse {
	var recs []image.DeleteResponse
	tags, digests := e.refsOf(id)
	for _, k := range append(tags, digests...) {
		delete(e.tags, k)
		recs = append(recs, image.DeleteResponse{Untagged: k})
	}
	return recs
}

// singleRepository reports whether the references are all of one
// repository with at most one tag, as the daemon's isSingleReference.
func singleRepository(refs []string) bool {
	if len(refs) <= 1 {
		return len(refs) == 1
	}
	name, tags := "", 0
	for _, r := range refs {
		n, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			return false
		}
		if _, ok := n.(reference.Canonical); !ok {
			tags++
		}
		if name != "" && n.Name() != name || tags > 1 {
			return false
		}
		name = n.Name()
	}
	return true
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// usersOf are the containers made from the image, sorted.
func (e *Engine) usersOf(id string) []string {
	var out []string
	for cid, c := range e.containers {
		if c.imageID == id {
			out = append(out, cid)
		}
	}
	sortStrings(out)
	return out
}

// gc drops the layers, chains and blobs no image or container refers to,
// as the layer store's reference counts and containerd's garbage
// collector do: a base removed is no longer there to load a delta onto.
func (e *Engine) gc() {
	keepChains := map[v1.Hash]bool{}
	keepBlobs := map[v1.Hash]bool{}
	for _, im := range e.images {
		for _, c := range chainIDs(im.config.RootFS.DiffIDs) {
			keepChains[c] = true
		}
		if im.manifest != nil {
			keepBlobs[e.descriptor(im).Digest] = true
			keepBlobs[im.manifest.Config.Digest] = true
			for _, l := range im.manifest.Layers {
				keepBlobs[l.Digest] = true
			}
		}
	}
	for _, c := range e.containers {
		for _, ch := range chainIDs(c.stack) {
			keepChains[ch] = true
		}
	}
	keepLayers := map[v1.Hash]bool{}
	for ch, d := range e.chains {
		if keepChains[ch] {
			keepLayers[d] = true
		} else {
			delete(e.chains, ch)
		}
	}
	for d := range e.layers {
		if !keepLayers[d] {
			delete(e.layers, d)
		}
	}
	for d := range e.blobs {
		if !keepBlobs[d] {
			delete(e.blobs, d)
		}
	}
}
