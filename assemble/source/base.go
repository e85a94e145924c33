// Package source is where the base of an image comes from: the engine,
// ds01's cache or a registry, with the layer descriptors a delta load
// names, and the few files the user layer reads out of the base.
package source

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/limits"
	"github.com/ds01/ds01/layers"
)

// ErrNotInDaemon is returned by Base for a ref the daemon does not hold.
var ErrNotInDaemon = errors.New("image is not in the Docker daemon")

// Base is an image held by the daemon, seen without `docker save`: its
// config rebuilt from inspect and history, its layers known by diff ID
// only. go-containerregistry's daemon.Image would save the whole image to
// learn its manifest (ggcr #1835: minutes and gigabytes for a CUDA base).
type Base struct {
	Ref         string
	ID          string   // the image ID as the daemon reports it
	RepoDigests []string // registry digests, when the image was pulled
	Image       v1.Image `json:"-"`
}

// InDaemon is ref as the daemon holds it: inspected, with its history.
func InDaemon(ctx context.Context, d *engine.Docker, ref string) (*Base, error) {
	ins, err := d.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%s: %w", ref, ErrNotInDaemon)
		}
		return nil, fmt.Errorf("inspecting %s: %w", ref, err)
	}
	return fromInspect(ctx, d, ref, ins)
}

// fromInspect is InDaemon for an image already inspected.
func fromInspect(ctx context.Context, d *engine.Docker, ref string, ins client.ImageInspectResult) (*Base, error) {
	hist, err := d.ImageHistory(ctx, ins.ID)
	if err != nil {
		return nil, fmt.Errorf("reading history of %s: %w", ref, err)
	}
	cfg := &v1.ConfigFile{
		Architecture: ins.Architecture,
		OS:           ins.Os,
		OSVersion:    ins.OsVersion,
		Variant:      ins.Variant,
		Author:       ins.Author,
		RootFS:       v1.RootFS{Type: "layers"},
	}
	if t, err := time.Parse(time.RFC3339Nano, ins.Created); err == nil {
		cfg.Created = v1.Time{Time: t}
	}
	if ins.Config != nil {
		// The daemon's config JSON and go-containerregistry's share field
		// names: a round trip keeps Env, Cmd, Entrypoint, WorkingDir, User,
		// Labels, ExposedPorts, Volumes, Healthcheck, Shell, StopSignal.
		b, err := json.Marshal(ins.Config)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &cfg.Config); err != nil {
			return nil, fmt.Errorf("reading config of %s: %w", ref, err)
		}
	}
	var diffIDs []v1.Hash
	for _, l := range ins.RootFS.Layers {
		h, err := v1.NewHash(l)
		if err != nil {
			return nil, fmt.Errorf("layer %q of %s: %w", l, ref, err)
		}
		diffIDs = append(diffIDs, h)
	}
	cfg.RootFS.DiffIDs = diffIDs
	cfg.History = history(hist.Items, len(diffIDs))
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	img := &daemonImage{raw: raw, cfg: cfg}
	if d.Store == engine.Containerd && cfg.Config.Labels[label.Layers] != "" {
		// An image ds01 loaded itself: the engine holds its layers under the
		// descriptors ds01's manifest listed, recorded in the label.
		if img.descs, err = label.ParseLayersRecord(cfg.Config.Labels[label.Layers], len(diffIDs)); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	}
	return &Base{Ref: ref, ID: ins.ID, RepoDigests: ins.RepoDigests, Image: img}, nil
}

// Described says whether the base's layer descriptors are known as the
// daemon holds them, which a delta load on the containerd store needs.
func (b *Base) Described() bool {
	di, ok := b.Image.(*daemonImage)
	return !ok || di.descs != nil
}

// history turns the daemon's history (newest first, no empty_layer flag)
// into config history. A step of size 0 is taken for an empty layer; when
// that does not add up to the layer count the history is dropped, which
// Docker accepts, rather than kept wrong.
func history(items []image.HistoryResponseItem, layers int) []v1.History {
	var out []v1.History
	nonEmpty := 0
	for _, it := range slices.Backward(items) {
		h := v1.History{Created: v1.Time{Time: time.Unix(it.Created, 0).UTC()}, CreatedBy: it.CreatedBy, Comment: it.Comment, EmptyLayer: it.Size == 0}
		if !h.EmptyLayer {
			nonEmpty++
		}
		out = append(out, h)
	}
	if nonEmpty != layers {
		return nil
	}
	return out
}

// daemonImage is a v1.Image whose layers live in the daemon only.
type daemonImage struct {
	raw []byte
	cfg *v1.ConfigFile
	// descs, when known, are the layers' descriptors as the containerd
	// store holds them; else the graphdriver store's view applies.
	descs []v1.Descriptor
	// mediaType is the manifest's, when read from the content store.
	mediaType types.MediaType
}

var _ v1.Image = (*daemonImage)(nil)

// Bytesless says whether img is known to ds01 by its descriptors only, its
// layers' bytes held by the engine alone (a record, the content store).
func Bytesless(img v1.Image) bool {
	_, ok := img.(*daemonImage)
	return ok
}

func (i *daemonImage) Layers() ([]v1.Layer, error) {
	var out []v1.Layer
	for n, h := range i.cfg.RootFS.DiffIDs {
		out = append(out, i.layer(n, h))
	}
	return out, nil
}

// MediaType follows the recorded layers: OCI layers go in an OCI manifest.
func (i *daemonImage) MediaType() (types.MediaType, error) {
	if i.mediaType != "" {
		return i.mediaType, nil
	}
	if len(i.descs) > 0 && i.descs[0].MediaType.IsLayer() && strings.HasPrefix(string(i.descs[0].MediaType), "application/vnd.oci.") {
		return types.OCIManifestSchema1, nil
	}
	return types.DockerManifestSchema2, nil
}
func (i *daemonImage) Size() (int64, error) {
	b, err := i.RawManifest()
	return int64(len(b)), err
}
func (i *daemonImage) ConfigName() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(i.raw))}, nil
}
func (i *daemonImage) ConfigFile() (*v1.ConfigFile, error) { return i.cfg.DeepCopy(), nil }
func (i *daemonImage) RawConfigFile() ([]byte, error)      { return i.raw, nil }
func (i *daemonImage) Digest() (v1.Hash, error) {
	b, err := i.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(b))}, nil
}

func (i *daemonImage) layer(n int, h v1.Hash) daemonLayer {
	l := daemonLayer{h: h}
	if i.descs != nil {
		l.desc = &i.descs[n]
	}
	return l
}

// Manifest describes the layers by their recorded descriptors or, without
// them, as the graphdriver store holds them: uncompressed, digest = diff
// ID. Their sizes are then unknown without reading them, and nothing ds01
// does with such a base needs them.
func (i *daemonImage) Manifest() (*v1.Manifest, error) {
	cn, _ := i.ConfigName()
	mt, _ := i.MediaType()
	ct := types.DockerConfigJSON
	if mt == types.OCIManifestSchema1 {
		ct = types.OCIConfigJSON
	}
	m := &v1.Manifest{
		SchemaVersion: 2,
		MediaType:     mt,
		Config:        v1.Descriptor{MediaType: ct, Size: int64(len(i.raw)), Digest: cn},
	}
	for n, h := range i.cfg.RootFS.DiffIDs {
		if i.descs != nil {
			m.Layers = append(m.Layers, i.descs[n])
			continue
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerUncompressedLayer, Digest: h})
	}
	return m, nil
}
func (i *daemonImage) RawManifest() ([]byte, error) {
	m, _ := i.Manifest()
	return json.Marshal(m)
}
func (i *daemonImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for n, d := range i.descs {
		if d.Digest == h {
			return i.layer(n, i.cfg.RootFS.DiffIDs[n]), nil
		}
	}
	return i.LayerByDiffID(h)
}
func (i *daemonImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	if n := slices.Index(i.cfg.RootFS.DiffIDs, h); n >= 0 {
		return i.layer(n, h), nil
	}
	return nil, fmt.Errorf("layer %s is not in this image", h)
}

// ErrLayerInDaemon is returned when something tries to read a layer that
// only the daemon holds: ds01 never exports a base from the daemon.
var ErrLayerInDaemon = errors.New("layer is held by the Docker daemon only and is never exported by ds01")

type daemonLayer struct {
	h    v1.Hash
	desc *v1.Descriptor // as the containerd store holds it, when known
}

func (l daemonLayer) Digest() (v1.Hash, error) {
	if l.desc != nil {
		return l.desc.Digest, nil
	}
	return l.h, nil
}
func (l daemonLayer) DiffID() (v1.Hash, error) { return l.h, nil }
func (l daemonLayer) Compressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("%s: %w", l.h, ErrLayerInDaemon)
}
func (l daemonLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("%s: %w", l.h, ErrLayerInDaemon)
}
func (l daemonLayer) Size() (int64, error) {
	if l.desc != nil {
		return l.desc.Size, nil
	}
	return 0, fmt.Errorf("%s: %w", l.h, ErrLayerInDaemon)
}
func (l daemonLayer) MediaType() (types.MediaType, error) {
	if l.desc != nil {
		return l.desc.MediaType, nil
	}
	return types.DockerUncompressedLayer, nil
}

// Files copies the files of want out of a container of the image that
// is created, never started, and always removed, Ctrl-C included. Files are
// read with their content; Headers only as far as their tar header (the
// stream is closed after it, so a sparse 400 GB lastlog costs nothing).
func Files(ctx context.Context, d *engine.Docker, imageID string, want layers.Want) (*layers.Files, error) {
	return FilesFor(ctx, d, imageID, want, "")
}

// FilesFor is Files for the making of image forImage, which the
// container is labelled with.
func FilesFor(ctx context.Context, d *engine.Docker, imageID string, want layers.Want, forImage string) (*layers.Files, error) {
	created, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image: imageID,
			// Never started; an entrypoint is only set so that images
			// without one can still be created.
			Entrypoint: []string{"/ds01-never-started"},
			Labels:     map[string]string{label.Purpose: "read-base-files", label.For: forImage},
		},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return nil, fmt.Errorf("creating a container of %s to read its files: %w", imageID, err)
	}
	defer d.RemoveContainer(created.ID)

	cp := &copier{d: d, ctx: ctx, id: created.ID, fs: layers.NewFiles(), want: want}
	fs := cp.fs
	wanted := want.Matcher()
	// Each copy mounts the container's root (about 45 ms on
	// fuse-overlayfs), so the small files of /etc come in one archive,
	// unless /etc turns out to be unreasonably large.
	done := map[string]bool{}
	if ok, err := cp.copy("etc", true, wanted, limits.EtcArchive.Max); err != nil {
		return nil, err
	} else if ok {
		for _, p := range slices.Concat(want.Files, want.Headers, want.Trees) {
			if p == "etc" || strings.HasPrefix(p, "etc/") {
				done[p] = true
			}
		}
	}
	one := func(p string) func(string) (bool, bool) {
		return func(name string) (bool, bool) {
			k, data := wanted(name)
			return k && (name == p || strings.HasPrefix(name, p+"/")), data
		}
	}
	for _, p := range slices.Concat(want.Files, want.Headers, want.Trees) {
		if done[p] {
			continue
		}
		// Only a tree is read past its first entry: for a header, the
		// stream is closed before the body (a sparse lastlog can be huge).
		if slices.Contains(want.Trees, p) {
			if _, err := cp.copy(p, true, one(p), -1); err != nil {
				return nil, err
			}
		} else if err := cp.one(p, one(p)); err != nil {
			return nil, err
		}
	}
	fetch := func(p string, data bool) error {
		return cp.one(p, func(name string) (bool, bool) { return name == p, data })
	}
	// Follow symlinks among the wanted files: the copy gives the link, and
	// its target is fetched in turn, resolved inside the image root.
	for range 8 {
		more := false
		for _, p := range slices.Concat(want.Files, want.Headers) {
			_, resolved, ok, err := fs.Resolve(p)
			if err != nil || ok {
				continue
			}
			if _, tried := fs.Get(resolved); !tried && resolved != "" {
				if err := fetch(resolved, slices.Contains(want.Files, p)); err != nil {
					return nil, err
				}
				if _, got := fs.Get(resolved); got {
					more = true
				}
			}
		}
		if !more {
			break
		}
	}
	if err := cp.linkHard(); err != nil {
		return nil, err
	}
	return fs, nil
}

// one copies the single entry at p, after asking the engine what it is:
// a FIFO or a device is recorded by its header and never copied (its
// archive would open it: a FIFO hangs the engine's tar process, which
// `docker rm -f` cannot clear).
func (c *copier) one(p string, keep func(name string) (keep, data bool)) error {
	st, err := c.d.ContainerStatPath(c.ctx, c.id, client.ContainerStatPathOptions{Path: "/" + p})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		// The engine's stat follows links, and answers a loop or a chain
		// longer than the kernel follows with a bare 500.
		return fmt.Errorf("the Docker engine cannot say what /%s in the base is (a loop or a chain of symbolic links longer than the kernel follows does this): %w", p, err)
	}
	if m := st.Stat.Mode; m&(os.ModeNamedPipe|os.ModeDevice|os.ModeSocket|os.ModeCharDevice|os.ModeIrregular) != 0 {
		if k, _ := keep(p); k {
			c.fs.Add(p, &tar.Header{Typeflag: specialType(m), Mode: int64(m.Perm()), Size: 0}, nil)
		}
		return nil
	}
	_, err = c.copy(p, false, keep, -1)
	return err
}

func specialType(m os.FileMode) byte {
	switch {
	case m&os.ModeNamedPipe != 0:
		return tar.TypeFifo
	case m&os.ModeCharDevice != 0:
		return tar.TypeChar
	case m&os.ModeDevice != 0:
		return tar.TypeBlock
	}
	return tar.TypeFifo // a socket, or stranger: not a regular file either way
}

// linkHard gives the hard links among the files read with content the
// content of their target, fetched when the archive did not carry it
// (the containerd store's engines write /etc/passwd as a link to the
// file of the same inode that came first): an empty passwd would make
// an image without root.
func (c *copier) linkHard() error {
	wanted := c.want.Matcher()
	for _, f := range c.fs.HardLinks() {
		if _, data := wanted(f.Header.Name); !data {
			continue // a header is all that is wanted of it
		}
		target := f.Header.Linkname
		if t, ok := c.fs.Get(target); !ok || (t.Header.Typeflag == tar.TypeReg && t.Data == nil && t.Header.Size > 0) {
			c.fs.Remove(target)
			if err := c.one(target, func(name string) (bool, bool) { return name == target, true }); err != nil {
				return err
			}
		}
		if err := c.fs.LinkHard(f.Header.Name); err != nil {
			return fmt.Errorf("reading the base: %w", err)
		}
	}
	return nil
}

// copier copies paths out of a container into a set of files.
type copier struct {
	d    *engine.Docker
	ctx  context.Context
	id   string
	fs   *layers.Files
	want layers.Want
}

// errArchiveLimit is an archive cut by its limit: abandoned, never taken
// for a whole one (io.LimitReader's cut reads as a clean end).
var errArchiveLimit = errors.New("archive over its limit")

// copy reads the archive of p and keeps the entries keep says to, with
// their content where it says so. Unless tree is set, the stream is closed
// after the first entry, before any body is read. With limit >= 0, an archive larger than limit
// bytes is abandoned, and ok is false. A missing p is not an error.
func (c *copier) copy(p string, tree bool, keep func(name string) (keep, data bool), limit int64) (ok bool, err error) {
	res, err := c.d.CopyFromContainer(c.ctx, c.id, client.CopyFromContainerOptions{SourcePath: "/" + p})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("copying /%s out of the base: %w", p, err)
	}
	defer res.Content.Close()
	var r io.Reader = res.Content
	if limit >= 0 {
		r = limits.Reader(r, limit, func() error { return errArchiveLimit })
	}
	var budget layers.Budget
	// The archive names entries after the last element of p.
	parent := path.Dir(p)
	tr := tar.NewReader(r)
	var added []string
	for first := true; ; first = false {
		h, err := tr.Next()
		if err == io.EOF {
			return true, nil
		}
		if errors.Is(err, errArchiveLimit) {
			// Too large: forget what it gave; the caller reads the
			// wanted paths one by one.
			for _, n := range added {
				c.fs.Remove(n)
			}
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading /%s from the base: %w", p, err)
		}
		name := strings.TrimPrefix(path.Join(parent, h.Name), "./")
		k, data := keep(name)
		if k {
			data = data && h.Typeflag == tar.TypeReg
			if err := budget.Take(name, h.Size, data, c.want.InTree(name)); err != nil {
				return false, err
			}
			var body []byte
			if data {
				body = make([]byte, h.Size)
				if _, err := io.ReadFull(tr, body); err != nil {
					if errors.Is(err, errArchiveLimit) {
						for _, n := range added {
							c.fs.Remove(n)
						}
						return false, nil
					}
					return false, fmt.Errorf("reading /%s from the base: %w", name, err)
				}
			}
			if h.Typeflag == tar.TypeLink {
				h.Linkname = strings.TrimPrefix(path.Join(parent, h.Linkname), "./")
			}
			c.fs.Add(name, h, body)
			added = append(added, name)
		}
		if first && !tree {
			return true, nil
		}
	}
}

// layerIDs are the base's diff IDs.
func (b *Base) LayerIDs() []v1.Hash {
	cfg, err := b.Image.ConfigFile()
	if err != nil {
		return nil
	}
	return cfg.RootFS.DiffIDs
}

// Digest is the base's registry digest when the daemon pulled it from one,
// else its image ID.
func (b *Base) Digest() string {
	for _, rd := range b.RepoDigests {
		if _, dig, ok := strings.Cut(rd, "@"); ok {
			return dig
		}
	}
	return b.ID
}
