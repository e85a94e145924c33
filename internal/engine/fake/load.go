package fake

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/engine"
)

// importDir is where the graphdriver loader unpacks an archive; its
// errors name files there.
const importDir = "/var/lib/docker/tmp/docker-import-1234567890"

// candidate is an image about to be held: its config, on the containerd
// store its manifest and the blobs the content store gains, and the layers
// the engine gains, uncompressed, by diff ID.
type candidate struct {
	rawConfig   []byte
	config      *v1.ConfigFile
	rawManifest []byte
	manifest    *v1.Manifest
	blobs       map[v1.Hash][]byte
	layers      map[v1.Hash][]byte
	tags        []string
}

func (c *candidate) id() string {
	raw := c.rawConfig
	if c.manifest != nil {
		raw = c.rawManifest
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(raw))
}

func chainIDs(diffIDs []v1.Hash) []v1.Hash {
	var out []v1.Hash
	for i, d := range diffIDs {
		if i == 0 {
			out = append(out, d)
			continue
		}
		h := sha256.Sum256([]byte(out[i-1].String() + " " + d.String()))
		out = append(out, v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h)})
	}
	return out
}

func sortStrings(s []string) { slices.Sort(s) }

func hashOf(b []byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(b))}
}

// uncompress undoes gzip or zstd, as the daemon's loaders detect them;
// anything else is taken for a plain tar.
func uncompress(b []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	}
	return b, nil
}

// readArchive reads a whole tar into memory, as the daemon unpacks one
// before it looks at it, and the bytes it was sent.
func readArchive(r io.Reader) (map[string][]byte, int64, error) {
	cr := &counter{r: r}
	files := map[string][]byte{}
	tr := tar.NewReader(cr)
	var err error
	for {
		var h *tar.Header
		if h, err = tr.Next(); err != nil {
			break
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		var b []byte
		if b, err = io.ReadAll(tr); err != nil {
			break
		}
		files[path.Clean(strings.TrimPrefix(h.Name, "./"))] = b
	}
	io.Copy(io.Discard, cr)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return files, cr.n, err
}

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// messages is the daemon's JSON message stream.
type messages struct{ bytes.Buffer }

func (m *messages) stream(s string) { m.put(map[string]string{"stream": s}) }
func (m *messages) fail(err error) {
	m.put(map[string]any{"errorDetail": map[string]string{"message": err.Error()}, "error": err.Error()})
}
func (m *messages) put(v any) {
	b, _ := json.Marshal(v)
	m.Write(append(b, '\n'))
}

// ImageLoad reads a docker-archive (graphdriver store) or the OCI layout
// in it (containerd store) and holds its images under their tags. Its
// errors are in the message stream, as the daemon's are.
func (e *Engine) ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (client.ImageLoadResult, error) {
	e.called("ImageLoad")
	e.mu.Unlock()
	files, n, rerr := readArchive(input)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.loadBytes += n
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out messages
	fail, corrupt := e.failNext, e.corruptNxt
	e.failNext, e.corruptNxt = "", false
	var cs []*candidate
	err := rerr
	switch {
	case err != nil:
	case fail != "":
		err = errors.New(fail)
	case e.store == engine.Containerd:
		cs, err = e.readOCI(files)
	default:
		cs, err = e.readDockerArchive(files)
	}
	if err != nil {
		out.fail(err)
		return io.NopCloser(&out), nil
	}
	for _, c := range cs {
		if corrupt {
			if err := c.corrupt(); err != nil {
				return nil, err
			}
		}
		e.hold(c, &out)
	}
	return io.NopCloser(&out), nil
}

type archiveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func noFile(name string) error {
	return fmt.Errorf("open %s/%s: no such file or directory", importDir, name)
}

// readDockerArchive reads manifest.json as the graphdriver loader does:
// the file of a layer whose chain the engine holds is never opened.
func (e *Engine) readDockerArchive(files map[string][]byte) ([]*candidate, error) {
	mj, ok := files["manifest.json"]
	if !ok {
		return nil, noFile("manifest.json")
	}
	var entries []archiveEntry
	if err := json.Unmarshal(mj, &entries); err != nil {
		return nil, fmt.Errorf("invalid manifest.json: %w", err)
	}
	var out []*candidate
	for _, m := range entries {
		raw, ok := files[path.Clean(m.Config)]
		if !ok {
			return nil, noFile(m.Config)
		}
		cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("invalid image config %s: %w", m.Config, err)
		}
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			return nil, fmt.Errorf("invalid manifest, layers length mismatch: expected %d, got %d", len(m.Layers), len(cfg.RootFS.DiffIDs))
		}
		c := &candidate{rawConfig: raw, config: cfg, layers: map[v1.Hash][]byte{}, tags: m.RepoTags}
		for i, ch := range chainIDs(cfg.RootFS.DiffIDs) {
			if _, held := e.chains[ch]; held {
				continue
			}
			data, ok := files[path.Clean(m.Layers[i])]
			if !ok {
				return nil, noFile(m.Layers[i])
			}
			u, err := uncompress(data)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", m.Layers[i], err)
			}
			if got, want := hashOf(u), cfg.RootFS.DiffIDs[i]; got != want {
				return nil, fmt.Errorf("invalid diffID for layer %d: expected %q, got %q", i, want, got)
			}
			c.layers[cfg.RootFS.DiffIDs[i]] = u
		}
		out = append(out, c)
	}
	return out, nil
}

// blob is a blob from the archive, checked against its digest, or else
// from the content store.
func (e *Engine) blob(files map[string][]byte, d v1.Hash) ([]byte, bool, error) {
	if b, ok := files["blobs/"+d.Algorithm+"/"+d.Hex]; ok {
		if got := hashOf(b); got != d {
			return nil, false, fmt.Errorf("digest mismatch: blobs/%s/%s is %s", d.Algorithm, d.Hex, got)
		}
		return b, true, nil
	}
	b, ok := e.blobs[d]
	return b, ok, nil
}

// readOCI reads index.json as the containerd image store does: every blob
// the manifest names that the archive carries goes into the content
// store; a layer whose snapshot the engine lacks is unpacked from its
// blob, and fails the load without one. A layer whose snapshot is there
// needs no blob, and the image is then held without it: it inspects whole
// but is not Available.
func (e *Engine) readOCI(files map[string][]byte) ([]*candidate, error) {
	ij, ok := files["index.json"]
	if !ok {
		return nil, errors.New("the fake engine's containerd store loads OCI layouts: the archive has no index.json")
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(ij, &idx); err != nil {
		return nil, fmt.Errorf("invalid index.json: %w", err)
	}
	var out []*candidate
	for _, desc := range idx.Manifests {
		c, err := e.readManifest(files, desc)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (e *Engine) readManifest(files map[string][]byte, desc v1.Descriptor) (*candidate, error) {
	c := &candidate{blobs: map[v1.Hash][]byte{}, layers: map[v1.Hash][]byte{}}
	get := func(d v1.Hash) ([]byte, error) {
		b, ok, err := e.blob(files, d)
		if err == nil && !ok {
			err = fmt.Errorf("content digest %s: not found", d)
		}
		if err == nil {
			c.blobs[d] = b
		}
		return b, err
	}
	var err error
	if c.rawManifest, err = get(desc.Digest); err != nil {
		return nil, err
	}
	if c.manifest, err = v1.ParseManifest(bytes.NewReader(c.rawManifest)); err != nil {
		return nil, fmt.Errorf("invalid manifest %s: %w", desc.Digest, err)
	}
	if c.rawConfig, err = get(c.manifest.Config.Digest); err != nil {
		return nil, err
	}
	if c.config, err = v1.ParseConfigFile(bytes.NewReader(c.rawConfig)); err != nil {
		return nil, fmt.Errorf("invalid config %s: %w", c.manifest.Config.Digest, err)
	}
	diffIDs := c.config.RootFS.DiffIDs
	if len(diffIDs) != len(c.manifest.Layers) {
		return nil, fmt.Errorf("mismatched image rootfs and manifest layers")
	}
	for i, ch := range chainIDs(diffIDs) {
		l := c.manifest.Layers[i]
		b, ok, err := e.blob(files, l.Digest)
		if err != nil {
			return nil, err
		}
		if ok {
			c.blobs[l.Digest] = b
		}
		if _, held := e.chains[ch]; held {
			continue
		}
		if !ok {
			return nil, fmt.Errorf("failed to extract layer %s: failed to get reader from content store: content digest %s: not found", diffIDs[i], l.Digest)
		}
		u, err := uncompress(b)
		if err != nil {
			return nil, fmt.Errorf("failed to extract layer %s: %w", diffIDs[i], err)
		}
		if got := hashOf(u); got != diffIDs[i] {
			return nil, fmt.Errorf("failed to extract layer %s: wrong diff id calculated on extraction %q", diffIDs[i], got)
		}
		c.layers[diffIDs[i]] = u
	}
	if n := desc.Annotations["io.containerd.image.name"]; n != "" {
		c.tags = []string{n}
	} else if mj, ok := files["manifest.json"]; ok {
		var entries []archiveEntry
		if json.Unmarshal(mj, &entries) == nil && len(entries) == 1 {
			c.tags = entries[0].RepoTags
		}
	}
	return c, nil
}

// corrupt makes the candidate another image than the one sent: one more
// label in its config.
func (c *candidate) corrupt() error {
	if c.config.Config.Labels == nil {
		c.config.Config.Labels = map[string]string{}
	}
	c.config.Config.Labels["fake.corrupted"] = "true"
	raw, err := json.Marshal(c.config)
	if err != nil {
		return err
	}
	c.rawConfig = raw
	if c.manifest == nil {
		return nil
	}
	c.manifest.Config.Digest, c.manifest.Config.Size = hashOf(raw), int64(len(raw))
	if c.rawManifest, err = json.Marshal(c.manifest); err != nil {
		return err
	}
	c.blobs[c.manifest.Config.Digest] = raw
	c.blobs[hashOf(c.rawManifest)] = c.rawManifest
	return nil
}

// hold takes the candidate in and puts its tags on it, telling out as the
// daemon's load tells.
func (e *Engine) hold(c *candidate, out *messages) string {
	for d, b := range c.blobs {
		e.blobs[d] = b
	}
	for d, u := range c.layers {
		e.layers[d] = u
	}
	for i, ch := range chainIDs(c.config.RootFS.DiffIDs) {
		e.chains[ch] = c.config.RootFS.DiffIDs[i]
	}
	id := c.id()
	if _, ok := e.images[id]; !ok {
		e.images[id] = &held{id: id, rawConfig: c.rawConfig, config: c.config, rawManifest: c.rawManifest, manifest: c.manifest}
	}
	for _, t := range c.tags {
		key, ok := familiar(t)
		if !ok {
			continue
		}
		if old, ok := e.tags[key]; ok && old != id && out != nil && e.store == engine.GraphDriver {
			out.stream(fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string\n", key, old))
		}
		e.tags[key] = id
		e.images[id].lastTag = time.Now().UTC()
		if out != nil {
			out.stream("Loaded image: " + key + "\n")
		}
	}
	if len(c.tags) == 0 && out != nil {
		out.stream("Loaded image ID: " + id + "\n")
	}
	return id
}

// AddImage holds img, whole, under tags (name:tag, or name@digest for a
// repo digest), as if it had been pulled, and returns its ID as the
// engine's store gives it.
func (e *Engine) AddImage(img v1.Image, tags ...string) (string, error) {
	c, err := candidateOf(img, e.store)
	if err != nil {
		return "", fmt.Errorf("fake: adding an image: %w", err)
	}
	c.tags = tags
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hold(c, nil), nil
}

func candidateOf(img v1.Image, store engine.Store) (*candidate, error) {
	c := &candidate{blobs: map[v1.Hash][]byte{}, layers: map[v1.Hash][]byte{}}
	var err error
	if c.rawConfig, err = img.RawConfigFile(); err != nil {
		return nil, err
	}
	if c.config, err = v1.ParseConfigFile(bytes.NewReader(c.rawConfig)); err != nil {
		return nil, err
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		if c.layers[d], err = readAll(l.Uncompressed); err != nil {
			return nil, err
		}
		if store == engine.Containerd {
			dg, err := l.Digest()
			if err != nil {
				return nil, err
			}
			if c.blobs[dg], err = readAll(l.Compressed); err != nil {
				return nil, err
			}
		}
	}
	if store != engine.Containerd {
		return c, nil
	}
	if c.rawManifest, err = img.RawManifest(); err != nil {
		return nil, err
	}
	if c.manifest, err = v1.ParseManifest(bytes.NewReader(c.rawManifest)); err != nil {
		return nil, err
	}
	c.blobs[hashOf(c.rawManifest)] = c.rawManifest
	c.blobs[c.manifest.Config.Digest] = c.rawConfig
	return c, nil
}

func readAll(open func() (io.ReadCloser, error)) ([]byte, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
