package layers

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// WhiteoutPrefix starts the name of a whiteout in a layer.
const WhiteoutPrefix = ".wh."

// Spool gathers the entries of a layer whose contents may be too large to
// hold in memory (files saved from a container), in whatever order they
// arrive, and writes them as a deterministic tar: sorted, numeric owners,
// PAX, one modification time. Bodies wait in a temporary file.
type Spool struct {
	f       *os.File
	size    int64
	entries map[string]spooled
	skipped []string
}

type spooled struct {
	hdr tar.Header
	off int64
}

// NewSpool makes a spool whose temporary file lives in dir ("" for the
// system's).
func NewSpool(dir string) (*Spool, error) {
	f, err := os.CreateTemp(dir, "ds01-spool-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // lives as long as it is open
	return &Spool{f: f, entries: map[string]spooled{}}, nil
}

// Close releases the temporary file.
func (s *Spool) Close() error { return s.f.Close() }

// Len is the number of entries.
func (s *Spool) Len() int { return len(s.entries) }

// Paths are the entries' paths, sorted.
func (s *Spool) Paths() []string {
	ps := make([]string, 0, len(s.entries))
	for p := range s.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// Add records an entry at p (a clean path relative to the root) with the
// header's type, mode, owner and link, and the body of a regular file.
func (s *Spool) Add(p string, h *tar.Header, body io.Reader) error {
	p = clean(p)
	if p == "" {
		return fmt.Errorf("spool: empty path")
	}
	if s.skip(p) {
		return nil
	}
	e := spooled{hdr: tar.Header{
		Typeflag: h.Typeflag, Mode: h.Mode & 0o7777, Uid: h.Uid, Gid: h.Gid,
		Linkname: h.Linkname, Devmajor: h.Devmajor, Devminor: h.Devminor,
	}, off: s.size}
	if h.Typeflag == tar.TypeReg {
		n, err := io.Copy(s.f, io.LimitReader(body, h.Size))
		if err != nil {
			return fmt.Errorf("spooling /%s: %w", p, err)
		}
		if n != h.Size {
			return fmt.Errorf("spooling /%s: got %d bytes of %d", p, n, h.Size)
		}
		e.hdr.Size = n
		s.size += n
	}
	s.entries[p] = e
	return nil
}

// Whiteout records the deletion of p, as a ".wh." entry beside it.
func (s *Spool) Whiteout(p string) {
	p = clean(p)
	if s.skip(p) {
		return
	}
	s.entries[path.Join(path.Dir(p), WhiteoutPrefix+path.Base(p))] = spooled{hdr: tar.Header{Typeflag: tar.TypeReg, Mode: 0o644}}
}

// skip leaves out a path with a component named .wh.*: in a layer such a
// name is not a file but a deletion (a whiteout, or with .wh..wh..opq the
// emptying of a directory), so a container's file of that name would
// delete the file it names from the image instead of being saved.
func (s *Spool) skip(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if strings.HasPrefix(c, WhiteoutPrefix) {
			s.skipped = append(s.skipped, p)
			return true
		}
	}
	return false
}

// Skipped are the paths left out because a layer would read them as
// whiteouts, in the order they came.
func (s *Spool) Skipped() []string { return s.skipped }

// SkippedWarning says why p was left out, for the user.
func SkippedWarning(p string) string {
	return fmt.Sprintf("left out /%s: a name starting with %s is a deletion marker (whiteout) in an image layer, so it cannot be saved as a file; rename it if you need it", p, WhiteoutPrefix)
}

// Size is the bytes of file contents spooled.
func (s *Spool) Size() int64 { return s.size }

// WriteTar writes the entries sorted by path, each with mtime t. Parents
// come before children because a prefix sorts first.
func (s *Spool) WriteTar(w io.Writer, t time.Time) error {
	tw := tar.NewWriter(w)
	t = t.UTC().Truncate(time.Second)
	for _, p := range s.Paths() {
		e := s.entries[p]
		h := e.hdr
		h.Name, h.ModTime, h.Format = p, t, tar.FormatPAX
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if h.Typeflag == tar.TypeLink {
			h.Linkname = strings.TrimPrefix(clean(h.Linkname), "/")
		}
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("writing /%s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := io.Copy(tw, io.NewSectionReader(s.f, e.off, h.Size)); err != nil {
				return fmt.Errorf("writing /%s: %w", p, err)
			}
		}
	}
	return tw.Close()
}
