package layers

import (
	"archive/tar"
	"fmt"
	"io"
	"slices"
)

// NewFiles is an empty set of files, for callers that find a base's files
// some other way than reading its layers (a container of the base in the
// Docker daemon, a cached index).
func NewFiles() *Files { return &Files{byPath: map[string]*File{}} }

// Add records a file under p; the header is copied and renamed to p.
func (fs *Files) Add(p string, h *tar.Header, data []byte) {
	hh := *h
	hh.Name = clean(p)
	fs.byPath[hh.Name] = &File{Header: &hh, Data: data}
}

// WriteTar stores the files as a tar, sorted, so that a base's files can be
// kept in a cache and read back without touching the base again. Entries
// read without content keep their size in a PAX record, not as data.
func (fs *Files) WriteTar(w io.Writer) error {
	paths := make([]string, 0, len(fs.byPath))
	for p := range fs.byPath {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		f := fs.byPath[p]
		h := *f.Header
		h.Format = tar.FormatPAX
		h.PAXRecords = map[string]string{"DS01.size": fmt.Sprint(h.Size)}
		h.Size = int64(len(f.Data))
		if h.Typeflag == tar.TypeLink || h.Typeflag == tar.TypeReg {
			// Hard links were resolved to their content when read.
			h.Typeflag, h.Linkname = tar.TypeReg, ""
		}
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return tw.Close()
}

// ReadFilesTar reads what WriteTar wrote.
func ReadFilesTar(r io.Reader) (*Files, error) {
	fs := NewFiles()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading files index: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(tr, MaxFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("reading files index: %w", err)
		}
		if len(data) > MaxFileSize {
			return nil, fmt.Errorf("files index: %s is larger than %d bytes", h.Name, MaxFileSize)
		}
		var size int64
		if v, ok := h.PAXRecords["DS01.size"]; ok {
			fmt.Sscan(v, &size)
		}
		h.Size = size
		delete(h.PAXRecords, "DS01.size")
		if len(data) == 0 {
			data = nil
		}
		fs.Add(h.Name, h, data)
	}
}

// Remove forgets the file at p.
func (fs *Files) Remove(p string) { delete(fs.byPath, clean(p)) }
