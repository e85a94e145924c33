package deploy

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

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

// notSaved are paths a saved layer never carries: the files useradd makes
// huge, scratch space, caches, and what Docker itself puts into every
// container.
var notSaved = []string{"/var/log/lastlog", "/var/log/faillog", "/tmp", "/var/tmp", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv", "/proc", "/sys", "/dev", "/run"}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// underAny is a predicate for paths at or below any of dirs.
func underAny(dirs []string) func(string) bool {
	return func(p string) bool {
		return slices.ContainsFunc(dirs, func(d string) bool { return under(p, d) })
	}
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
	skip := slices.Clone(notSaved)
	skip = append(skip, home+"/.cache")
	for _, m := range c.Mounts {
		skip = append(skip, m.Destination) // the workspace, data, models
	}
	spool, err := layers.NewSpool("")
	if err != nil {
		return nil, err
	}
	defer spool.Close()
	content, err := d.CaptureChanges(ctx, c.ID, underAny(skip), spool)
	if err != nil {
		return nil, fmt.Errorf("reading the changes of %s: %w", c.Name, err)
	}
	// Directories merely touched (their mtime moved because an excluded
	// child changed) are nothing worth an image.
	if !content {
		return nil, nil
	}

	base, err := d.Base(ctx, c.Image)
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
	inBase := map[v1.Hash]bool{}
	for _, h := range base.layerIDs() {
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

// CaptureChanges copies a container's filesystem changes into the spool:
// the paths its diff lists, except those excluded, added trees copied
// whole, modified entries alone, deletions as whiteouts. Never an export
// of the whole filesystem. It reports whether anything but directories
// changed. Copies are quickest while the container runs, when its root is
// mounted already.
func (d *Daemon) CaptureChanges(ctx context.Context, id string, excluded func(string) bool, spool *layers.Spool) (bool, error) {
	diff, err := d.ContainerDiff(ctx, id, client.ContainerDiffOptions{})
	if err != nil {
		return false, err
	}
	kinds := map[string]container.ChangeType{}
	for _, ch := range diff.Changes {
		kinds[path.Clean(ch.Path)] = ch.Kind
	}
	paths := make([]string, 0, len(kinds))
	for p := range kinds {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	content := false
	for _, p := range paths {
		if excluded(p) || p == "/" {
			continue
		}
		parentKind, parentChanged := kinds[path.Dir(p)]
		switch kinds[p] {
		case container.ChangeDelete:
			if parentChanged && parentKind == container.ChangeDelete {
				continue // the parent's whiteout covers it
			}
			spool.Whiteout(p)
			content = true
		case container.ChangeAdd:
			if parentChanged && parentKind == container.ChangeAdd {
				continue // copied with its parent's tree
			}
			if _, err := d.copyInto(ctx, id, p, true, excluded, spool); err != nil {
				return false, err
			}
			content = true
		default: // modified: the entry itself, a directory without its contents
			nonDir, err := d.copyInto(ctx, id, p, false, excluded, spool)
			if err != nil {
				return false, err
			}
			content = content || nonDir
		}
	}
	return content, nil
}

// copyInto copies p out of the container into the spool: its whole tree
// when tree is set, else only its own entry. nonDir says whether anything
// but a directory was added.
func (d *Daemon) copyInto(ctx context.Context, id, p string, tree bool, excluded func(string) bool, s *layers.Spool) (nonDir bool, err error) {
	res, err := d.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: p})
	if err != nil {
		return false, fmt.Errorf("copying %s out of the container: %w", p, err)
	}
	defer res.Content.Close()
	parent := path.Dir(p)
	tr := tar.NewReader(res.Content)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nonDir, nil
		}
		if err != nil {
			return nonDir, fmt.Errorf("reading %s from the container: %w", p, err)
		}
		name := path.Join(parent, h.Name)
		if !excluded(name) {
			if h.Typeflag == tar.TypeLink {
				h.Linkname = path.Join(parent, h.Linkname)
			}
			if err := s.Add(name, h, tr); err != nil {
				return nonDir, err
			}
			nonDir = nonDir || h.Typeflag != tar.TypeDir
		}
		if !tree {
			return nonDir, nil
		}
	}
}
