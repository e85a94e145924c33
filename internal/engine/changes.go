package engine

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/layers"
)

// NotCaptured are paths a captured layer never carries: the files useradd makes
// huge, scratch space, caches, and what Docker itself puts into every
// container.
var NotCaptured = []string{"/var/log/lastlog", "/var/log/faillog", "/tmp", "/var/tmp", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv", "/proc", "/sys", "/dev", "/run"}

// Under says whether p is dir or a path below it.
func Under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// UnderAny is a predicate for paths at or below any of dirs.
func UnderAny(dirs []string) func(string) bool {
	return func(p string) bool {
		return slices.ContainsFunc(dirs, func(d string) bool { return Under(p, d) })
	}
}

// CaptureChanges copies a container's filesystem changes into the spool:
// the paths its diff lists, except those excluded, added trees copied
// whole, modified entries alone, deletions as whiteouts. Never an export
// of the whole filesystem. It reports whether anything but directories
// changed. Copies are quickest while the container runs, when its root is
// mounted already.
func (d *Docker) CaptureChanges(ctx context.Context, id string, excluded func(string) bool, spool *layers.Spool) (bool, error) {
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
func (d *Docker) copyInto(ctx context.Context, id, p string, tree bool, excluded func(string) bool, s *layers.Spool) (nonDir bool, err error) {
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
