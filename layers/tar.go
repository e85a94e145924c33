// Package layers writes deterministic tar layers and finds files in a stack
// of layers. It knows nothing of registries or Docker: a layer here is
// anything that can hand out its uncompressed tar stream.
package layers

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
)

// Entry is one file, directory or link of a layer, with every attribute
// spelled out so nothing depends on the machine, the umask or the clock.
type Entry struct {
	Path     string // relative to the image root, no leading or trailing "/"
	Type     byte   // tar.TypeReg, tar.TypeDir, tar.TypeSymlink or tar.TypeLink
	Mode     int64  // permission bits, including setuid/setgid/sticky
	UID, GID int
	ModTime  time.Time
	Linkname string
	Data     []byte
}

// Header is the tar header written for the entry.
func (e Entry) Header() *tar.Header {
	name := e.Path
	if e.Type == tar.TypeDir {
		name += "/"
	}
	return &tar.Header{
		Typeflag: e.Type,
		Name:     name,
		Linkname: e.Linkname,
		Mode:     e.Mode,
		Uid:      e.UID,
		Gid:      e.GID,
		Size:     int64(len(e.Data)),
		// Whole seconds: PAX would otherwise carry sub-second times, and
		// no access or change times, which differ from run to run.
		ModTime: e.ModTime.Truncate(time.Second).UTC(),
		Format:  tar.FormatPAX,
	}
}

// Write writes the entries as an uncompressed tar, sorted by path so that
// the same entries always give the same bytes, parents before children.
// Owners are numeric only: a name lookup would depend on the host.
func Write(w io.Writer, entries []Entry) error {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	tw := tar.NewWriter(w)
	for i, e := range sorted {
		if e.Path == "" || e.Path != path.Clean(e.Path) || strings.HasPrefix(e.Path, "/") || strings.HasPrefix(e.Path, "../") {
			return fmt.Errorf("layer entry %q: path must be clean and relative", e.Path)
		}
		if i > 0 && sorted[i-1].Path == e.Path {
			return fmt.Errorf("layer entry %q appears twice", e.Path)
		}
		if e.Type != tar.TypeReg && len(e.Data) > 0 {
			return fmt.Errorf("layer entry %q: only regular files carry data", e.Path)
		}
		if err := tw.WriteHeader(e.Header()); err != nil {
			return fmt.Errorf("writing header of %s: %w", e.Path, err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			return fmt.Errorf("writing %s: %w", e.Path, err)
		}
	}
	return tw.Close()
}
