package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/internal/engine"
)

// ImageInfo is one of a user's images as `image list` shows it.
type ImageInfo struct {
	Tag     string    `json:"image"`
	Project string    `json:"project"`
	ID      string    `json:"id"`
	Base    string    `json:"base"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	UserID  string    `json:"user_id"`
	GroupID string    `json:"group_id"`
	// Matches is true when the image's DS01 labels name the user it is
	// listed for: such an image needs no setup when a container is made.
	Matches bool `json:"user_setup_matches"`
}

// ListImages lists ds01-{uid}/* images.
func (d *Pipeline) ListImages(ctx context.Context, uid, gid uint32) ([]ImageInfo, error) {
	prefix := label.UserRepo(uid)
	res, err := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", prefix+"*")})
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var out []ImageInfo
	for _, im := range res.Items {
		for _, tag := range im.RepoTags {
			if !strings.HasPrefix(tag, prefix) || strings.Contains(tag, engine.LoadingTag) {
				continue // not the user's, or a load under way
			}
			l, has := label.DecodeImage(im.Labels)
			info := ImageInfo{
				Tag: tag, ID: im.ID, Size: im.Size, Created: time.Unix(im.Created, 0).UTC(),
				Project: strings.TrimSuffix(strings.TrimPrefix(tag, prefix), ":latest"),
				Base:    l.Base,
			}
			if has {
				info.UserID, info.GroupID = strconv.FormatUint(uint64(l.UID), 10), strconv.FormatUint(uint64(l.GID), 10)
			}
			info.Matches = has && l.UID == uid && l.GID == gid
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b ImageInfo) int { return strings.Compare(a.Tag, b.Tag) })
	return out, nil
}

// LegacyImage is an image the old flow committed: tagged {image}:{name}._.{UID}.
type LegacyImage struct {
	Tag  string `json:"image"`
	ID   string `json:"id"`
	Size int64  `json:"size"`
}

// LegacyImages finds the old flow's committed images: every one with
// uid nil (root), else those whose tag ends in ._.{uid}.
func (d *Pipeline) LegacyImages(ctx context.Context, uid *uint32) ([]LegacyImage, error) {
	res, err := d.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var out []LegacyImage
	for _, im := range res.Items {
		for _, tag := range im.RepoTags {
			i := strings.LastIndex(tag, ":")
			if i < 0 || !strings.Contains(tag[i+1:], "._.") {
				continue
			}
			if uid != nil && !strings.HasSuffix(tag, label.ContainerName("", *uid)) {
				continue
			}
			out = append(out, LegacyImage{Tag: tag, ID: im.ID, Size: im.Size})
		}
	}
	slices.SortFunc(out, func(a, b LegacyImage) int { return strings.Compare(a.Tag, b.Tag) })
	return out, nil
}

// ContainersOf lists the names of containers, running or not, made from
// the image that ref names.
func (d *Pipeline) ContainersOf(ctx context.Context, ref string) ([]string, error) {
	ins, err := d.ImageInspect(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("inspecting %s: %w", ref, err)
	}
	cs, err := d.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	var names []string
	for _, c := range cs.Items {
		if c.ImageID == ins.ID {
			names = append(names, strings.TrimPrefix(strings.Join(c.Names, ","), "/"))
		}
	}
	return names, nil
}

// RemoveTag removes an image by tag; the image itself goes when no other
// tag or container holds it.
func (d *Pipeline) RemoveTag(ctx context.Context, tag string, force bool) error {
	if _, err := d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: force}); err != nil {
		return fmt.Errorf("removing %s: %w", tag, err)
	}
	return nil
}

// PackageRepo is the repository of the shared package images.
const PackageRepo = "ds01-packages/"

// PackageImage is one ds01-packages/<key> image.
type PackageImage struct {
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
func (p PackageImage) Key() string {
	k := strings.TrimPrefix(p.Tags[0], PackageRepo)
	k, _, _ = strings.Cut(k, ":")
	return k
}

// PackageImages lists the package images in the daemon, each with what
// uses it.
func (d *Pipeline) PackageImages(ctx context.Context) ([]PackageImage, error) {
	list, err := d.ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	chains := map[string][]string{} // image ID → its layers
	names := map[string]string{}
	var out []PackageImage
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
			if strings.HasPrefix(t, PackageRepo) {
				tags = append(tags, t)
			}
		}
		if len(tags) > 0 {
			out = append(out, PackageImage{Tags: tags, ID: im.ID})
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
	slices.SortFunc(out, func(a, b PackageImage) int { return strings.Compare(a.Tags[0], b.Tags[0]) })
	return out, nil
}

// RemovePackageImage removes an unused package image by its tags; the
// daemon removes the image with the last one, and refuses while a
// container uses it.
func (d *Pipeline) RemovePackageImage(ctx context.Context, p PackageImage) error {
	for _, t := range p.Tags {
		if _, err := d.ImageRemove(ctx, t, client.ImageRemoveOptions{}); err != nil {
			return fmt.Errorf("removing %s: %w", t, err)
		}
	}
	return nil
}
