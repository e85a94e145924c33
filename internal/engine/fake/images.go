package fake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/engine"
)

// held is an image the engine holds.
type held struct {
	id          string
	rawConfig   []byte
	config      *v1.ConfigFile
	rawManifest []byte       // the containerd store only
	manifest    *v1.Manifest // the containerd store only
	lastTag     time.Time
}

// familiar is the key a reference is held under: Docker's familiar form,
// with :latest added to a bare name; name@digest stays a digest reference.
func familiar(ref string) (string, bool) {
	r, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", false
	}
	if _, ok := r.(reference.Canonical); ok {
		return reference.FamiliarString(r), true
	}
	return reference.FamiliarString(reference.TagNameOnly(r)), true
}

var hexPrefix = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// lookup finds an image by tag, digest reference, ID or short ID, in that
// order, as the daemon does. The caller holds the lock.
func (e *Engine) lookup(ref string) (*held, error) {
	key, named := familiar(ref)
	if named {
		if id, ok := e.tags[key]; ok {
			return e.images[id], nil
		}
	}
	short := strings.TrimPrefix(ref, "sha256:")
	if hexPrefix.MatchString(short) {
		var found *held
		for id, im := range e.images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), short) {
				if found != nil {
					return nil, notFound("No such image: %s (the short ID is ambiguous)", ref)
				}
				found = im
			}
		}
		if found != nil {
			return found, nil
		}
	}
	if named {
		return nil, notFound("No such image: %s", key)
	}
	return nil, notFound("No such image: %s", ref)
}

// refsOf are the references to an image, tags and digest references,
// sorted. The caller holds the lock.
func (e *Engine) refsOf(id string) (tags, digests []string) {
	for k, v := range e.tags {
		if v != id {
			continue
		}
		if strings.Contains(k, "@") {
			digests = append(digests, k)
		} else {
			tags = append(tags, k)
		}
	}
	slices.Sort(tags)
	slices.Sort(digests)
	return tags, digests
}

func (e *Engine) size(im *held) int64 {
	n := int64(0)
	for _, d := range im.config.RootFS.DiffIDs {
		n += int64(len(e.layers[d]))
	}
	return n
}

// setJSON fills dst, a field of a moby type, from v by way of JSON: the
// moby types nest OCI types this module does not name.
func setJSON(dst, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, dst)
	}
	if err != nil {
		panic(fmt.Sprintf("fake: converting %T to %T: %v", v, dst, err))
	}
}

func (e *Engine) descriptor(im *held) v1.Descriptor {
	return v1.Descriptor{MediaType: im.manifest.MediaType, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(im.id, "sha256:")}, Size: int64(len(im.rawManifest))}
}

// ImageInspect is the image at ref (tag, ID or short ID).
func (e *Engine) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	e.called("ImageInspect")
	defer e.mu.Unlock()
	im, err := e.lookup(ref)
	if err != nil {
		return client.ImageInspectResult{}, err
	}
	tags, digests := e.refsOf(im.id)
	cfg := im.config
	r := image.InspectResponse{
		ID: im.id, RepoTags: tags, RepoDigests: digests, Author: cfg.Author, Architecture: cfg.Architecture,
		Variant: cfg.Variant, Os: cfg.OS, OsVersion: cfg.OSVersion, Size: e.size(im),
		RootFS:   image.RootFS{Type: "layers"},
		Metadata: image.Metadata{LastTagTime: im.lastTag},
	}
	if r.RepoTags == nil {
		r.RepoTags = []string{}
	}
	if !cfg.Created.IsZero() {
		r.Created = cfg.Created.UTC().Format(time.RFC3339Nano)
	}
	setJSON(&r.Config, cfg.Config)
	for _, d := range cfg.RootFS.DiffIDs {
		r.RootFS.Layers = append(r.RootFS.Layers, d.String())
	}
	if e.store == engine.Containerd {
		setJSON(&r.Descriptor, e.descriptor(im))
	}
	return client.ImageInspectResult{InspectResponse: r}, nil
}

// ImageHistory is the image's history, newest first, as the daemon gives
// it: the image's ID on the newest step only, "<missing>" below.
func (e *Engine) ImageHistory(ctx context.Context, ref string, opts ...client.ImageHistoryOption) (client.ImageHistoryResult, error) {
	e.called("ImageHistory")
	defer e.mu.Unlock()
	im, err := e.lookup(ref)
	if err != nil {
		return client.ImageHistoryResult{}, err
	}
	var items []image.HistoryResponseItem
	layer := 0
	for _, h := range im.config.History {
		it := image.HistoryResponseItem{ID: "<missing>", Created: h.Created.Unix(), CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: []string{}}
		if !h.EmptyLayer && layer < len(im.config.RootFS.DiffIDs) {
			it.Size = int64(len(e.layers[im.config.RootFS.DiffIDs[layer]]))
			layer++
		}
		items = append([]image.HistoryResponseItem{it}, items...)
	}
	if len(items) > 0 {
		items[0].ID = im.id
		items[0].Tags, _ = e.refsOf(im.id)
	}
	return client.ImageHistoryResult{Items: items}, nil
}

// matchLabels reports whether labels satisfy every label= filter value
// ("key" or "key=value").
func matchLabels(values map[string]bool, labels map[string]string) bool {
	for v := range values {
		k, want, hasValue := strings.Cut(v, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != want {
			return false
		}
	}
	return true
}

func checkFilters(f client.Filters, allowed ...string) error {
	for k := range f {
		if !slices.Contains(allowed, k) {
			return invalid("invalid filter '%s'", k)
		}
	}
	return nil
}

// matchingTags are the tags of an image that a reference= filter keeps
// (all of them without one): the daemon lists only those.
func matchingTags(tags []string, patterns map[string]bool) []string {
	if patterns == nil {
		return tags
	}
	out := []string{}
	for _, t := range tags {
		r, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			continue
		}
		for p := range patterns {
			if ok, _ := reference.FamiliarMatch(p, r); ok {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// ImageList lists the images the filters (reference=, label=, dangling=)
// keep. On the containerd store, Manifests adds each image's manifest with
// Available telling whether the content store holds every blob it names.
func (e *Engine) ImageList(ctx context.Context, options client.ImageListOptions) (client.ImageListResult, error) {
	e.called("ImageList")
	defer e.mu.Unlock()
	if err := checkFilters(options.Filters, "reference", "label", "dangling"); err != nil {
		return client.ImageListResult{}, err
	}
	ids := make([]string, 0, len(e.images))
	for id := range e.images {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	items := []image.Summary{}
	for _, id := range ids {
		im := e.images[id]
		all, digests := e.refsOf(id)
		tags := matchingTags(all, options.Filters["reference"])
		if len(tags) == 0 && options.Filters["reference"] != nil ||
			!matchLabels(options.Filters["label"], im.config.Config.Labels) ||
			options.Filters["dangling"]["true"] && len(all) > 0 || options.Filters["dangling"]["false"] && len(all) == 0 {
			continue
		}
		if tags == nil {
			tags = []string{}
		}
		s := image.Summary{ID: id, RepoTags: tags, RepoDigests: digests, Created: im.config.Created.Unix(), Size: e.size(im),
			Labels: im.config.Config.Labels, Containers: int64(len(e.usersOf(id))), SharedSize: -1}
		if s.RepoDigests == nil {
			s.RepoDigests = []string{}
		}
		if e.store == engine.Containerd {
			content, total := e.content(im)
			if content < total && e.omitIncomplete {
				continue
			}
			setJSON(&s.Descriptor, e.descriptor(im))
			if options.Manifests {
				s.Manifests = []image.ManifestSummary{e.manifestSummary(im, content, total)}
			}
		}
		items = append(items, s)
	}
	return client.ImageListResult{Items: items}, nil
}

// content is the bytes of the image's blobs the content store holds, and
// of every blob its manifest names.
func (e *Engine) content(im *held) (content, total int64) {
	descs := append([]v1.Descriptor{e.descriptor(im), im.manifest.Config}, im.manifest.Layers...)
	for _, d := range descs {
		total += d.Size
		if _, ok := e.blobs[d.Digest]; ok {
			content += d.Size
		}
	}
	return content, total
}

func (e *Engine) manifestSummary(im *held, content, total int64) image.ManifestSummary {
	m := image.ManifestSummary{ID: im.id, Available: content == total, Kind: image.ManifestKindImage,
		ImageData: &image.ImageProperties{Containers: e.usersOf(im.id)}}
	m.Size.Content, m.Size.Total = content, total
	m.ImageData.Size.Unpacked = e.size(im)
	setJSON(&m.Descriptor, e.descriptor(im))
	setJSON(&m.ImageData.Platform, v1.Platform{OS: im.config.OS, Architecture: im.config.Architecture, Variant: im.config.Variant})
	return m
}

// ImageTag puts Target on the image at Source; the image that held the
// tag before keeps its other references, or none.
func (e *Engine) ImageTag(ctx context.Context, options client.ImageTagOptions) (client.ImageTagResult, error) {
	e.called("ImageTag")
	defer e.mu.Unlock()
	im, err := e.lookup(options.Source)
	if err != nil {
		return client.ImageTagResult{}, err
	}
	r, err := reference.ParseNormalizedNamed(options.Target)
	if err != nil {
		return client.ImageTagResult{}, fmt.Errorf("error parsing reference: %q is not a valid repository/tag: %w", options.Target, err)
	}
	if _, ok := r.(reference.Canonical); ok {
		return client.ImageTagResult{}, fmt.Errorf("refusing to create a tag with a digest reference")
	}
	e.tags[reference.FamiliarString(reference.TagNameOnly(r))] = im.id
	im.lastTag = time.Now().UTC()
	return client.ImageTagResult{}, nil
}

// ImageSave writes the image at the one ref as a docker-archive that is
// also an OCI layout. On the containerd store the layers whose blobs the
// content store lacks are listed but silently left out, as the real one
// does.
func (e *Engine) ImageSave(ctx context.Context, refs []string, opts ...client.ImageSaveOption) (client.ImageSaveResult, error) {
	e.called("ImageSave")
	defer e.mu.Unlock()
	if len(refs) != 1 {
		return nil, invalid("the fake engine saves exactly one image at a time, not %d", len(refs))
	}
	im, err := e.lookup(refs[0])
	if err != nil {
		return nil, err
	}
	tag, ok := familiar(refs[0])
	if tags, _ := e.refsOf(im.id); !ok || e.tags[tag] != im.id || strings.Contains(tag, "@") {
		if len(tags) == 0 {
			return nil, invalid("the fake engine saves only tagged images; %s has no tag", refs[0])
		}
		tag = tags[0]
	}
	img, missing, err := e.v1Image(im)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := engine.WriteArchive(&buf, img, tag, func(d v1.Hash) bool { return missing[d] }); err != nil {
		return nil, fmt.Errorf("fake: saving %s: %w", refs[0], err)
	}
	return io.NopCloser(&buf), nil
}

// v1Image is a held image as go-containerregistry sees it, with the diff
// IDs of the layers whose blobs are missing.
func (e *Engine) v1Image(im *held) (v1.Image, map[v1.Hash]bool, error) {
	c := &heldCore{rawConfig: im.rawConfig, rawManifest: im.rawManifest, blobs: map[v1.Hash]heldLayer{}}
	missing := map[v1.Hash]bool{}
	if im.manifest == nil {
		// The graphdriver store keeps layers uncompressed, and saves them so.
		cd := hashOf(im.rawConfig)
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
			Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: cd, Size: int64(len(im.rawConfig))}}
		for _, d := range im.config.RootFS.DiffIDs {
			m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.OCIUncompressedLayer, Digest: d, Size: int64(len(e.layers[d]))})
		}
		raw, err := json.Marshal(m)
		if err != nil {
			return nil, nil, err
		}
		c.rawManifest = raw
		for _, l := range m.Layers {
			c.blobs[l.Digest] = heldLayer{desc: l, diffID: l.Digest, data: e.layers[l.Digest], ok: true}
		}
	} else {
		for i, l := range im.manifest.Layers {
			data, ok := e.blobs[l.Digest]
			d := im.config.RootFS.DiffIDs[i]
			c.blobs[l.Digest] = heldLayer{desc: l, diffID: d, data: data, ok: ok}
			if !ok {
				missing[d] = true
			}
		}
	}
	img, err := partial.CompressedToImage(c)
	return img, missing, err
}

type heldCore struct {
	rawConfig, rawManifest []byte
	blobs                  map[v1.Hash]heldLayer
}

func (c *heldCore) RawConfigFile() ([]byte, error) { return c.rawConfig, nil }
func (c *heldCore) RawManifest() ([]byte, error)   { return c.rawManifest, nil }
func (c *heldCore) MediaType() (types.MediaType, error) {
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	err := json.Unmarshal(c.rawManifest, &m)
	return m.MediaType, err
}
func (c *heldCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	l, ok := c.blobs[h]
	if !ok {
		return nil, fmt.Errorf("fake: no layer %s", h)
	}
	return l, nil
}

// heldLayer is a layer blob as held, or missing (ok false).
type heldLayer struct {
	desc   v1.Descriptor
	diffID v1.Hash
	data   []byte
	ok     bool
}

func (l heldLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l heldLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l heldLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l heldLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l heldLayer) Compressed() (io.ReadCloser, error) {
	if !l.ok {
		return nil, fmt.Errorf("content digest %s: not found", l.desc.Digest)
	}
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
