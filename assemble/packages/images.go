package packages

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/moby/client"
)

// Repo is the repository of the shared package images.
const Repo = "ds01-packages/"

// Image is one ds01-packages/<key> image.
type Image struct {
	Tags []string `json:"images"`
	ID   string   `json:"id"`
	// LayerSize is its package layer's, what removing it frees when no
	// other image shares the layer.
	LayerSize int64 `json:"layer_size"`
	// UsedBy are the images built on it (their layers chain through its
	// own) and the containers made from it.
	UsedBy []string `json:"used_by,omitempty"`
}

// Key is the package image's key, the name after ds01-packages/.
func (p Image) Key() string {
	k := strings.TrimPrefix(p.Tags[0], Repo)
	k, _, _ = strings.Cut(k, ":")
	return k
}

// PackageImages lists the package images in the daemon, each with what
// uses it.
func (d *Installer) Images(ctx context.Context) ([]Image, error) {
	list, err := d.ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	chains := map[string][]string{} // image ID → its layers
	names := map[string]string{}
	var out []Image
	for _, im := range list.Items {
		ins, err := d.ImageInspect(ctx, im.ID)
		if err != nil {
			continue // gone meanwhile
		}
		chains[im.ID], names[im.ID] = ins.RootFS.Layers, im.ID
		if len(im.RepoTags) > 0 {
			names[im.ID] = im.RepoTags[0]
		}
		var tags []string
		for _, t := range im.RepoTags {
			if strings.HasPrefix(t, Repo) {
				tags = append(tags, t)
			}
		}
		if len(tags) > 0 {
			out = append(out, Image{Tags: tags, ID: im.ID})
		}
	}
	cs, err := d.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	for i := range out {
		p := &out[i]
		for id, chain := range chains {
			if id != p.ID && len(chain) > len(chains[p.ID]) && slices.Equal(chain[:len(chains[p.ID])], chains[p.ID]) {
				p.UsedBy = append(p.UsedBy, names[id])
			}
		}
		for _, c := range cs.Items {
			if c.ImageID == p.ID {
				p.UsedBy = append(p.UsedBy, "container "+strings.TrimPrefix(strings.Join(c.Names, ","), "/"))
			}
		}
		slices.Sort(p.UsedBy)
		if h, err := d.ImageHistory(ctx, p.ID); err == nil && len(h.Items) > 0 {
			p.LayerSize = h.Items[0].Size
		}
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Tags[0], b.Tags[0]) })
	return out, nil
}

// RemovePackageImage removes an unused package image by its tags; the
// daemon removes the image with the last one, and refuses while a
// container uses it.
func (d *Installer) RemoveImage(ctx context.Context, p Image) error {
	for _, t := range p.Tags {
		if _, err := d.ImageRemove(ctx, t, client.ImageRemoveOptions{}); err != nil {
			return fmt.Errorf("removing %s: %w", t, err)
		}
	}
	return nil
}
