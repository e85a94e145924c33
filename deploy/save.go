package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/layers"
)

// SaveResult says what container retire --save put back into the image.
type SaveResult struct {
	Tag      string
	ImageID  string
	Previous string // the image the container was made from
	Paths    []string
	Bytes    int64 // file contents saved
	Layer    v1.Hash
	// Warnings name what could not be saved, and why.
	Warnings []string
}

// SaveChanges puts a container's filesystem changes back into an image as
// one layer, without docker commit: the changed paths are read from the
// container's diff and copied out (never an export of the whole
// filesystem), deletions become whiteouts, and the layer is appended to
// the container's image with every label kept. home is the user's home,
// whose .cache is left out. It returns nil when there is nothing to save.
func (d *Daemon) SaveChanges(ctx context.Context, c container.InspectResponse, tag, home string) (*SaveResult, error) {
	if err := d.notRolledBack(ctx, c, tag); err != nil {
		return nil, err
	}
	skip := slices.Clone(engine.NotCaptured)
	skip = append(skip, home+"/.cache")
	for _, m := range c.Mounts {
		skip = append(skip, m.Destination) // the workspace, data, models
	}
	spool, err := layers.NewSpool("")
	if err != nil {
		return nil, err
	}
	defer spool.Close()
	content, err := d.CaptureChanges(ctx, c.ID, engine.UnderAny(skip), spool)
	if err != nil {
		return nil, fmt.Errorf("reading the changes of %s: %w", c.Name, err)
	}
	// Directories merely touched (their mtime moved because an excluded
	// child changed) are nothing worth an image.
	if !content {
		return nil, nil
	}

	base, err := source.InDaemon(ctx, d.Docker, c.Image)
	if err != nil {
		return nil, fmt.Errorf("reading the image of %s: %w", c.Name, err)
	}
	cfg, err := base.Image.ConfigFile()
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp("", "ds01-saved-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := spool.WriteTar(tmp, cfg.Created.Time); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	layer, err := layers.FromFile(tmp.Name())
	if err != nil {
		return nil, err
	}
	name := strings.TrimPrefix(c.Name, "/")
	img, err := mutate.Append(base.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   cfg.Created,
		CreatedBy: fmt.Sprintf(savedBy+"%s: %d paths, %d bytes", name, spool.Len(), spool.Size()),
		Comment:   "saved from a container's changes, no docker commit",
	}})
	if err != nil {
		return nil, err
	}
	if img, err = withoutAllocation(img, cfg.Config); err != nil {
		return nil, err
	}
	inBase := map[v1.Hash]bool{}
	for _, h := range base.LayerIDs() {
		inBase[h] = true
	}
	sg, _, err := d.Stage(ctx, img, tag, func(h v1.Hash) bool { return inBase[h] }, nil)
	if err != nil {
		return nil, err
	}
	if err := sg.Commit(tag); err != nil {
		return nil, err
	}
	id := sg.ID
	diffID, _ := layer.DiffID()
	res := &SaveResult{Tag: tag, ImageID: id, Previous: c.Image, Paths: spool.Paths(), Bytes: spool.Size(), Layer: diffID}
	for _, p := range spool.Skipped() {
		res.Warnings = append(res.Warnings, layers.SkippedWarning(p))
	}
	return res, nil
}

// savedBy starts the history line of a layer SaveChanges made.
const savedBy = "ds01 container retire --save "

// ErrRebuilt is a container older than its project's image.
var ErrRebuilt = errors.New("the project's image was rebuilt after the container was made")

// notRolledBack refuses to save a container's changes into tag when tag
// is no longer the image the container was made from: the saved image
// would be the old one plus the changes, and the project would go back to
// the old base while its record names the new one.
func (d *Daemon) notRolledBack(ctx context.Context, c container.InspectResponse, tag string) error {
	cur, err := d.ImageInspect(ctx, tag)
	if err != nil || cur.ID == c.Image {
		return nil // no image there: saving makes it from the container's own
	}
	name := strings.TrimPrefix(c.Name, "/")
	return fmt.Errorf("%w: %s was made from %s, and %s is now %s (made %s): saving into it would put the project back on the image the container came from. Nothing was saved and the container was kept; copy what you need into /workspace (it is on the host) and retire it without --save, or redo the changes in a container of the current image",
		ErrRebuilt, name, c.Image, tag, cur.ID, cur.Created)
}

// withoutAllocation drops GPU allocation labels (ds01.gpu.*) from a saved
// image's config. A container's own are never in its image's config, but
// an image docker commit made of a ds01 container carries them, and every
// container of it would then be taken to hold those GPUs if ds01 did not
// write its own over them.
func withoutAllocation(img v1.Image, cfg v1.Config) (v1.Image, error) {
	var drop []string
	for k := range cfg.Labels {
		if strings.HasPrefix(k, gpuLabels) {
			drop = append(drop, k)
		}
	}
	if len(drop) == 0 {
		return img, nil
	}
	cfg.Labels = maps.Clone(cfg.Labels)
	for _, k := range drop {
		delete(cfg.Labels, k)
	}
	return mutate.Config(img, cfg)
}

// gpuLabels prefixes the allocation labels (gpu.LabelUUIDs, LabelIndices).
const gpuLabels = "ds01.gpu."
