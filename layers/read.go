package layers

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/ds01/ds01/internal/limits"
)

// Layer is what the reader needs of a layer: its uncompressed tar stream.
// go-containerregistry's v1.Layer has this method.
type Layer interface {
	Uncompressed() (io.ReadCloser, error)
}

// File is a file as the merged stack shows it.
type File struct {
	Header *tar.Header // Name is the clean path, without "./" or "/"
	Data   []byte      // for regular files that were asked for with data
}

// IsDir reports whether the file is a directory.
func (f *File) IsDir() bool { return f.Header.Typeflag == tar.TypeDir }

// Want names what to find. Paths are relative to the image root.
type Want struct {
	// Files are read with their content.
	Files []string
	// Headers are read without content, for files that may be huge (a
	// sparse lastlog) or directories whose attributes must be kept.
	Headers []string
	// Trees are directories read with everything below them.
	Trees []string
}

// MaxFileSize bounds the content read into memory for one file: account
// databases and skeleton files are small; anything bigger is not what the
// caller thinks it is.
const MaxFileSize = 16 << 20

// Budget bounds what one read of a base keeps: a wanted file's content
// to limits.AccountFile, each entry of a wanted tree (/etc/skel, copied
// into every user's image) to limits.SkelFile, and a tree's entries and
// bytes in all to limits.SkelEntries and limits.SkelBytes. The zero value
// is ready; use one per read.
type Budget struct{ entries, bytes int64 }

// Take accounts for the entry at p (a clean path) of the given size,
// kept with its content or not, and under a wanted tree or not.
func (b *Budget) Take(p string, size int64, data, inTree bool) error {
	in := "/" + p + " in the base"
	if !inTree {
		if !data {
			return nil
		}
		return limits.AccountFile.Check(in, size)
	}
	b.entries++
	if err := limits.SkelEntries.Check("the base's wanted tree around "+in, b.entries); err != nil {
		return err
	}
	if !data {
		return nil
	}
	if err := limits.SkelFile.Check(in, size); err != nil {
		return err
	}
	b.bytes += size
	return limits.SkelBytes.Check("the base's wanted tree around "+in, b.bytes)
}

// ErrOutsideRoot is returned for a symlink that leads out of the image.
var ErrOutsideRoot = errors.New("symlink leads outside the image root")

// Files is the result of Find: the files found, by clean path, with the
// headers of every parent directory on the way.
type Files struct {
	byPath map[string]*File
}

// Get returns the entry stored under exactly this path, without resolving
// symlinks.
func (fs *Files) Get(p string) (*File, bool) {
	f, ok := fs.byPath[clean(p)]
	return f, ok
}

// Below returns the entries under a directory asked for as a Tree, in no
// particular order.
func (fs *Files) Below(dir string) []*File {
	dir = clean(dir) + "/"
	var out []*File
	for p, f := range fs.byPath {
		if strings.HasPrefix(p, dir) {
			out = append(out, f)
		}
	}
	return out
}

// Resolve follows symlinks in p and its parents the way the kernel would
// inside a container whose root is the image, and returns the file. A
// missing file gives ok false. A link that climbs above the root gives
// ErrOutsideRoot: inside a container the kernel would clamp it, but such a
// base is broken or hostile, and its user should hear about it.
func (fs *Files) Resolve(p string) (f *File, resolved string, ok bool, err error) {
	resolved, err = fs.resolvePath(p)
	if err != nil {
		return nil, "", false, err
	}
	f, ok = fs.byPath[resolved]
	return f, resolved, ok, nil
}

func (fs *Files) resolvePath(p string) (string, error) {
	parts := strings.Split(clean(p), "/")
	var cur []string
	for hops := 0; len(parts) > 0; {
		name := parts[0]
		parts = parts[1:]
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			if len(cur) == 0 {
				return "", fmt.Errorf("%s: %w", p, ErrOutsideRoot)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, name)
		f, ok := fs.byPath[strings.Join(cur, "/")]
		if !ok || f.Header.Typeflag != tar.TypeSymlink {
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target := f.Header.Linkname
		cur = cur[:len(cur)-1]
		if strings.HasPrefix(target, "/") {
			cur = nil
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return strings.Join(cur, "/"), nil
}

func clean(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// Find reads the stack, bottom layer first, and returns what the merged
// filesystem shows for the wanted paths: upper layers win, whiteouts
// (".wh.name") and opaque directories (".wh..wh..opq") hide what lies below
// them, a non-directory hides everything under its path. Symlinks among the
// wanted paths are followed inside the root (another pass reads their
// targets), and hard links get the content of the file they link to.
func Find(stack []Layer, want Want) (*Files, error) {
	fs := &Files{byPath: map[string]*File{}}
	ws := newWantSet(want)
	files, headers := ws.files, ws.headers
	for pass := 0; ; pass++ {
		if err := fs.read(stack, ws); err != nil {
			return nil, err
		}
		more := false
		// Symlinks among the wanted paths, or on the way to them: ask for
		// their targets too.
		for _, set := range []map[string]bool{files, headers} {
			for p := range set {
				r, err := fs.resolvePath(p)
				if err != nil {
					continue // reported by Resolve, where the caller looks
				}
				if _, ok := fs.byPath[r]; !ok && !set[r] {
					set[r] = true
					more = true
				}
			}
		}
		// Hard links whose target content is not read yet.
		for p, f := range fs.byPath {
			if f.Header.Typeflag == tar.TypeLink && f.Data == nil && (files[p] || ws.underTree(p)) {
				t := clean(f.Header.Linkname)
				if !files[t] {
					files[t] = true
					more = true
				}
			}
		}
		if !more {
			break
		}
		if pass == 8 {
			// A longer chain of links is left unfollowed: Resolve then
			// finds no file, and Databases says so.
			break
		}
		fs.byPath = map[string]*File{}
	}
	// Hard links take the content of their target as it was in their own
	// layer; the target is read from the stack by name, which is the same
	// file unless an upper layer replaced it, a case no base we know has.
	for _, f := range fs.HardLinks() {
		fs.LinkHard(f.Header.Name)
	}
	return fs, nil
}

// HardLinks are the entries that are hard links, not yet given their
// target's content.
func (fs *Files) HardLinks() []*File {
	var out []*File
	for _, f := range fs.byPath {
		if f.Header.Typeflag == tar.TypeLink {
			out = append(out, f)
		}
	}
	return out
}

// LinkHard makes the hard link at p what its target is: the target's
// header (renamed) and content. A target that is missing, or itself not
// a regular file, is an error: the link would read as an empty file.
func (fs *Files) LinkHard(p string) error {
	f, ok := fs.byPath[clean(p)]
	if !ok || f.Header.Typeflag != tar.TypeLink {
		return nil
	}
	t, ok := fs.byPath[clean(f.Header.Linkname)]
	if !ok || t.Header.Typeflag != tar.TypeReg {
		return fmt.Errorf("/%s is a hard link to /%s, which is not a regular file of the base", f.Header.Name, clean(f.Header.Linkname))
	}
	h := *t.Header
	h.Name = f.Header.Name
	f.Header, f.Data = &h, t.Data
	return nil
}

// wantSet is a Want as sets, grown while links are followed, with the
// budget of the pass under way.
type wantSet struct {
	files, headers, trees map[string]bool
	budget                *Budget
}

func newWantSet(w Want) wantSet {
	ws := wantSet{files: map[string]bool{}, headers: map[string]bool{}, trees: map[string]bool{}}
	for _, p := range w.Files {
		ws.files[clean(p)] = true
	}
	for _, p := range w.Headers {
		ws.headers[clean(p)] = true
	}
	for _, p := range w.Trees {
		ws.trees[clean(p)] = true
	}
	return ws
}

// Matcher returns a function that says, for an entry at clean path p,
// whether it is wanted (keep) and with its content (data): wanted files
// and everything below wanted trees with content, wanted headers and the
// parent directories of anything wanted without.
func (w Want) Matcher() func(p string) (keep, data bool) { return newWantSet(w).match }

func (ws wantSet) match(p string) (keep, data bool) {
	data = ws.files[p] || ws.underTree(p)
	return data || ws.headers[p] || ws.trees[p] || ws.ancestor(p), data
}

// InTree reports whether p (a clean path) lies under a wanted tree.
func (w Want) InTree(p string) bool { return newWantSet(w).underTree(p) }

func (ws wantSet) underTree(p string) bool {
	for t := range ws.trees {
		if strings.HasPrefix(p, t+"/") {
			return true
		}
	}
	return false
}

// ancestor reports whether p is a parent directory of something wanted.
func (ws wantSet) ancestor(p string) bool {
	for _, set := range []map[string]bool{ws.files, ws.headers, ws.trees} {
		for w := range set {
			if strings.HasPrefix(w, p+"/") {
				return true
			}
		}
	}
	return false
}

// read walks the layers from the top down, so the first entry seen for a
// path is the one the merged filesystem shows.
func (fs *Files) read(stack []Layer, ws wantSet) error {
	ws.budget = &Budget{}
	deleted := map[string]bool{} // paths removed for the layers below
	opaque := map[string]bool{}  // directories whose lower content is hidden
	for i := len(stack) - 1; i >= 0; i-- {
		rc, err := stack[i].Uncompressed()
		if err != nil {
			return fmt.Errorf("opening layer %d: %w", i, err)
		}
		layerDeleted, layerOpaque := map[string]bool{}, map[string]bool{}
		err = fs.readLayer(rc, ws, deleted, opaque, layerDeleted, layerOpaque)
		rc.Close()
		if err != nil {
			return fmt.Errorf("reading layer %d: %w", i, err)
		}
		for p := range layerDeleted {
			deleted[p] = true
		}
		for p := range layerOpaque {
			opaque[p] = true
		}
	}
	return nil
}

func (fs *Files) readLayer(r io.Reader, ws wantSet, deleted, opaque, layerDeleted, layerOpaque map[string]bool) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := clean(h.Name)
		if p == "" {
			continue
		}
		dir, base := path.Dir(p), path.Base(p)
		if base == ".wh..wh..opq" {
			layerOpaque[dir] = true
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			layerDeleted[path.Join(dir, strings.TrimPrefix(base, ".wh."))] = true
			continue
		}
		keep, wantData := ws.match(p)
		if !keep {
			continue
		}
		if _, seen := fs.byPath[p]; seen || fs.hidden(p, deleted, opaque) {
			continue
		}
		f := &File{Header: h}
		f.Header.Name = p
		data := wantData && h.Typeflag == tar.TypeReg
		if err := ws.budget.Take(p, h.Size, data, ws.underTree(p)); err != nil {
			return err
		}
		if data {
			f.Data = make([]byte, h.Size)
			if _, err := io.ReadFull(tr, f.Data); err != nil {
				return fmt.Errorf("reading /%s: %w", p, err)
			}
		}
		fs.byPath[p] = f
	}
}

// hidden reports whether a lower layer's entry at p is masked by what the
// layers above did: deleted it or a parent, made a parent opaque, or put a
// non-directory at a parent's path.
func (fs *Files) hidden(p string, deleted, opaque map[string]bool) bool {
	if deleted[p] {
		return true
	}
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if deleted[d] || opaque[d] {
			return true
		}
		if f, ok := fs.byPath[d]; ok && !f.IsDir() {
			return true
		}
	}
	return false
}
