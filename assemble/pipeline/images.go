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
