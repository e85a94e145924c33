package fake

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/layers"
)

type memLayer []byte

func (l memLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l)), nil
}

// stack is the container's filesystem, bottom layer first.
func (e *Engine) stack(c *ctr) []layers.Layer {
	var out []layers.Layer
	for _, d := range c.stack {
		out = append(out, memLayer(e.layers[d]))
	}
	for _, u := range c.upper {
		out = append(out, memLayer(u))
	}
	return out
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// locate is where p leads in the container as the daemon resolves an
// archive path: symlinks among its parents followed inside the root, the
// last element not. It returns that clean path, and the file there.
func (e *Engine) locate(c *ctr, ref, p string) (string, *layers.File, error) {
	rel := clean(p)
	if rel == "" {
		return "", nil, invalid("the fake engine does not copy or stat the container's root")
	}
	st := e.stack(c)
	fs, err := layers.Find(st, layers.Want{Headers: []string{rel}})
	if err != nil {
		return "", nil, internal(err)
	}
	final := rel
	if dir := path.Dir(rel); dir != "." {
		_, r, _, err := fs.Resolve(dir)
		if err != nil {
			return "", nil, internal(err)
		}
		final = clean(path.Join(r, path.Base(rel)))
		if fs, err = layers.Find(st, layers.Want{Headers: []string{final}}); err != nil {
			return "", nil, internal(err)
		}
	}
	f, ok := fs.Get(final)
	if !ok {
		return "", nil, notFound("Could not find the file /%s in container %s", rel, ref)
	}
	return final, f, nil
}

func internal(err error) error { return &daemonError{msg: err.Error(), class: cerrdefs.ErrInternal} }

// stat is the PathStat of the file at p: a link's own mode, and the path
// it finally leads to.
func (e *Engine) stat(c *ctr, final string, f *layers.File) (container.PathStat, error) {
	st := container.PathStat{Name: path.Base(final), Size: f.Header.Size, Mode: f.Header.FileInfo().Mode(), Mtime: f.Header.ModTime}
	if f.Header.Typeflag == tar.TypeSymlink {
		fs, err := layers.Find(e.stack(c), layers.Want{Headers: []string{final}})
		if err != nil {
			return st, internal(err)
		}
		_, r, _, err := fs.Resolve(final)
		if err != nil {
			return st, internal(err)
		}
		st.LinkTarget = "/" + r
	}
	return st, nil
}

// ContainerStatPath says what is at a path of the container.
func (e *Engine) ContainerStatPath(ctx context.Context, id string, options client.ContainerStatPathOptions) (client.ContainerStatPathResult, error) {
	e.called("ContainerStatPath")
	defer e.mu.Unlock()
	c, err := e.findContainer(id)
	if err != nil {
		return client.ContainerStatPathResult{}, err
	}
	final, f, err := e.locate(c, id, options.Path)
	if err != nil {
		return client.ContainerStatPathResult{}, err
	}
	st, err := e.stat(c, final, f)
	return client.ContainerStatPathResult{Stat: st}, err
}

// CopyFromContainer is a tar of the path in the container's filesystem
// (its image's layers, and what was copied into it), named after the
// path's last element as the daemon names it: a file alone, a directory
// with everything below it, a symlink as itself.
func (e *Engine) CopyFromContainer(ctx context.Context, id string, options client.CopyFromContainerOptions) (client.CopyFromContainerResult, error) {
	e.called("CopyFromContainer")
	defer e.mu.Unlock()
	c, err := e.findContainer(id)
	if err != nil {
		return client.CopyFromContainerResult{}, err
	}
	final, f, err := e.locate(c, id, options.SourcePath)
	if err != nil {
		return client.CopyFromContainerResult{}, err
	}
	st, err := e.stat(c, final, f)
	if err != nil {
		return client.CopyFromContainerResult{}, err
	}
	want := layers.Want{Headers: []string{final}}
	switch f.Header.Typeflag {
	case tar.TypeDir:
		want.Trees = []string{final}
	case tar.TypeReg, tar.TypeLink:
		want.Files = []string{final}
	}
	fs, err := layers.Find(e.stack(c), want)
	if err != nil {
		return client.CopyFromContainerResult{}, internal(err)
	}
	top, _ := fs.Get(final)
	entries := append([]*layers.File{top}, fs.Below(final)...)
	slices.SortFunc(entries[1:], func(a, b *layers.File) int {
		return strings.Compare(strings.ReplaceAll(a.Header.Name, "/", "\x00"), strings.ReplaceAll(b.Header.Name, "/", "\x00"))
	})
	var buf bytes.Buffer
	if err := writeTree(&buf, entries, path.Dir(final)); err != nil {
		return client.CopyFromContainerResult{}, internal(err)
	}
	return client.CopyFromContainerResult{Content: io.NopCloser(&buf), Stat: st}, nil
}

// writeTree writes entries named relative to parent.
func writeTree(w io.Writer, entries []*layers.File, parent string) error {
	tw := tar.NewWriter(w)
	rel := func(p string) string {
		if parent == "." {
			return p
		}
		return strings.TrimPrefix(p, parent+"/")
	}
	for _, f := range entries {
		h := *f.Header
		h.Name = rel(h.Name)
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if h.Typeflag == tar.TypeLink {
			h.Linkname = rel(clean(h.Linkname))
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// CopyToContainer unpacks the tar into a directory of the container: it
// becomes an upper layer, which later copies and stats see.
func (e *Engine) CopyToContainer(ctx context.Context, id string, options client.CopyToContainerOptions) (client.CopyToContainerResult, error) {
	e.called("CopyToContainer")
	defer e.mu.Unlock()
	c, err := e.findContainer(id)
	if err != nil {
		return client.CopyToContainerResult{}, err
	}
	final, f, err := e.locate(c, id, options.DestinationPath)
	if err != nil {
		return client.CopyToContainerResult{}, err
	}
	if !f.IsDir() {
		return client.CopyToContainerResult{}, invalid("extraction point is not a directory")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(options.Content)
	var changes []container.FilesystemChange
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return client.CopyToContainerResult{}, invalid("reading the archive: %v", err)
		}
		h.Name = path.Join(final, clean(h.Name))
		if err := tw.WriteHeader(h); err != nil {
			return client.CopyToContainerResult{}, internal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return client.CopyToContainerResult{}, internal(fmt.Errorf("copying /%s: %w", h.Name, err))
		}
		changes = append(changes, container.FilesystemChange{Kind: container.ChangeAdd, Path: "/" + h.Name})
	}
	if err := tw.Close(); err != nil {
		return client.CopyToContainerResult{}, internal(err)
	}
	c.upper = append(c.upper, buf.Bytes())
	c.changes = append(c.changes, changes...)
	return client.CopyToContainerResult{}, nil
}
