package engine

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
)

// archiveManifest is one entry of a docker-archive's manifest.json.
type archiveManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// WriteArchive streams img as a docker-archive (what `docker save` writes
// and `docker load` reads), tagged tag. Blobs sit under blobs/sha256/ as in
// an OCI layout. A layer for which omit returns true is listed in the
// manifest but not carried: Docker's graphdriver loader never opens the file
// of a layer whose chain it already has. omit may be nil.
func WriteArchive(w io.Writer, img v1.Image, tag string, omit func(diffID v1.Hash) bool) error {
	tw := tar.NewWriter(w)
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("hashing config: %w", err)
	}
	ls, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing layers: %w", err)
	}
	m := archiveManifest{Config: blobPath(cfgName), RepoTags: []string{tag}}
	written := map[v1.Hash]bool{}
	if err := writeFile(tw, m.Config, int64(len(rawCfg)), strings.NewReader(string(rawCfg))); err != nil {
		return err
	}
	for i, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layer %d digest: %w", i, err)
		}
		m.Layers = append(m.Layers, blobPath(d))
		diffID, err := l.DiffID()
		if err != nil {
			return fmt.Errorf("layer %d diff ID: %w", i, err)
		}
		if written[d] || (omit != nil && omit(diffID)) {
			continue
		}
		written[d] = true
		size, err := l.Size()
		if err != nil {
			return fmt.Errorf("layer %d size: %w", i, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("opening layer %d: %w", i, err)
		}
		err = writeFile(tw, blobPath(d), size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, d, err)
		}
	}
	mj, err := json.Marshal([]archiveManifest{m})
	if err != nil {
		return err
	}
	if err := writeFile(tw, "manifest.json", int64(len(mj)), strings.NewReader(string(mj))); err != nil {
		return err
	}
	// The same archive is an OCI image layout too, which the containerd
	// image store reads: the manifest lists every layer, and the blobs
	// carried are the ones above.
	rawM, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	mDigest, err := img.Digest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	if err := writeFile(tw, blobPath(mDigest), int64(len(rawM)), strings.NewReader(string(rawM))); err != nil {
		return err
	}
	name := tag
	if r, err := nameRef(tag); err == nil {
		name = r
	}
	idx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: mt, Digest: mDigest, Size: int64(len(rawM)),
		Annotations: map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tagOf(tag)},
	}}})
	if err != nil {
		return err
	}
	for _, f := range []struct{ name, data string }{{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, {"index.json", string(idx)}} {
		if err := writeFile(tw, f.name, int64(len(f.data)), strings.NewReader(f.data)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// nameRef is a tag's fully qualified name as Docker's containerd image
// store keeps it: docker.io/…, not go-containerregistry's index.docker.io.
func nameRef(tag string) (string, error) {
	r, err := reference.ParseNormalizedNamed(tag)
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(r).String(), nil
}

func tagOf(tag string) string {
	r, err := name.NewTag(tag)
	if err != nil {
		return "latest"
	}
	return r.TagStr()
}

func writeFile(tw *tar.Writer, name string, size int64, r io.Reader) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	n, err := io.Copy(tw, r)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("writing %s: got %d bytes, want %d", name, n, size)
	}
	return nil
}

// LoadStats says what a load cost.
type LoadStats struct {
	Sent int64 // bytes of the archive sent to the daemon
}

type countingWriter struct {
	w        io.Writer
	n        atomic.Int64
	progress func(int64)
	stop     <-chan struct{} // closed: write no more
}

// errStopped ends an archive whose load was cancelled.
var errStopped = errors.New("load cancelled")

func (c *countingWriter) Write(p []byte) (int, error) {
	select {
	case <-c.stop:
		return 0, errStopped
	default:
	}
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	if c.progress != nil {
		c.progress(int64(n))
	}
	return n, err
}

// Load streams img into the daemon tagged tag; omit is as in WriteArchive.
func (d *Docker) Load(ctx context.Context, img v1.Image, tag string, omit func(v1.Hash) bool) (LoadStats, error) {
	return d.LoadWithProgress(ctx, img, tag, omit, nil)
}

// loadGrace is how long a cancelled load waits for the daemon's verdict.
const loadGrace = time.Minute

// LoadWithProgress is Load telling progress of every chunk sent. When ctx
// is cancelled (Ctrl-C) it stops sending and ends the archive short, then
// waits, up to loadGrace, for the daemon to say it is done: a daemon that
// had the whole archive goes on loading after the client hangs up, and an
// image would appear after ds01 exited, where no clean-up can see it.
func (d *Docker) LoadWithProgress(ctx context.Context, img v1.Image, tag string, omit func(v1.Hash) bool, progress func(n int64)) (LoadStats, error) {
	pr, pw := io.Pipe()
	cw := &countingWriter{w: pw, progress: progress, stop: ctx.Done()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := WriteArchive(cw, img, tag, omit)
		if errors.Is(err, errStopped) {
			err = nil // a clean end of a short archive, which the daemon refuses
		}
		pw.CloseWithError(err)
	}()
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopWait := context.AfterFunc(ctx, func() { time.AfterFunc(loadGrace, cancel) })
	defer stopWait()
	res, err := d.ImageLoad(lctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		<-done
		return LoadStats{Sent: cw.n.Load()}, fmt.Errorf("docker load of %s: %w", tag, err)
	}
	defer res.Close()
	err = readMessages(res)
	pr.CloseWithError(io.ErrClosedPipe) // the writer stops if the daemon stopped reading
	<-done
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return LoadStats{Sent: cw.n.Load()}, fmt.Errorf("docker load of %s: %w", tag, err)
	}
	return LoadStats{Sent: cw.n.Load()}, nil
}

// readMessages drains a daemon's JSON message stream and returns the first
// error it reports.
func readMessages(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading daemon response: %w", err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// Staged is an image loaded under a temporary tag of its own and checked,
// not yet under its name: a load that fails, is interrupted or loses a
// race never touches the name, and what it made is found by that tag.
type Staged struct {
	d       *Docker
	tmp     string
	want    string // the ID the image must have
	existed bool   // the daemon held that ID before: never removed
	ID      string // as the daemon reports it, once checked
}

// CheckFailed is a load the daemon took that is not the image assembled.
type CheckFailed struct{ error }

func (e CheckFailed) Unwrap() error { return e.error }

// LoadingTag starts the tag of an image being loaded.
const LoadingTag = ":ds01-loading-"

// tempTag is a tag beside tag that nothing else uses.
func tempTag(tag string) string {
	repo := tag
	if i := strings.LastIndex(tag, ":"); i > strings.LastIndex(tag, "/") {
		repo = tag[:i]
	}
	b := make([]byte, 6)
	rand.Read(b)
	return repo + LoadingTag + hex.EncodeToString(b)
}

// ExpectedID is the ID the daemon gives img: the config digest, or on the
// containerd store the manifest digest.
func (d *Docker) ExpectedID(img v1.Image) (string, error) {
	if d.Store == Containerd {
		h, err := img.Digest()
		return h.String(), err
	}
	h, err := img.ConfigName()
	return h.String(), err
}

// Stage loads img under a temporary tag beside tag and checks it. On
// any failure, and when ctx is cancelled, it removes what the daemon made
// (the image by its ID, unless the daemon held it before) and returns the
// error; a failed check is a CheckFailed.
func (d *Docker) Stage(ctx context.Context, img v1.Image, tag string, omit func(v1.Hash) bool, progress func(int64)) (*Staged, LoadStats, error) {
	want, err := d.ExpectedID(img)
	if err != nil {
		return nil, LoadStats{}, err
	}
	s := &Staged{d: d, tmp: tempTag(tag), want: want}
	if _, err := d.ImageInspect(ctx, want); err == nil {
		s.existed = true
	}
	st, err := d.LoadWithProgress(ctx, img, s.tmp, omit, progress)
	if err == nil {
		if s.ID, err = d.verifyLoaded(ctx, s.tmp, img); err != nil && ctx.Err() == nil {
			err = CheckFailed{err}
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		s.Discard()
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: the load of %s was stopped (%w); what the daemon had made of it was removed, and %s is as it was", tag, err, tag)
		}
		return nil, st, err
	}
	return s, st, nil
}

// CleanupContext outlives the command's: clean-up after Ctrl-C must run.
func CleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// discard removes what a failed load made: the image the load was to
// make, by its ID, unless the daemon held it before, and the temporary
// tag, which takes with it any other image the daemon made of the archive
// (nothing else refers to it).
func (s *Staged) Discard() {
	ctx, cancel := CleanupContext()
	defer cancel()
	if !s.existed {
		s.d.ImageRemove(ctx, s.want, client.ImageRemoveOptions{Force: true})
	}
	s.d.ImageRemove(ctx, s.tmp, client.ImageRemoveOptions{})
}

// commit puts the checked image under tag, in place of whatever was there,
// and drops the temporary tag. It runs to the end even after Ctrl-C:
// finishing is shorter than undoing.
func (s *Staged) Commit(tag string) error {
	ctx, cancel := CleanupContext()
	defer cancel()
	if _, err := s.d.ImageTag(ctx, client.ImageTagOptions{Source: s.tmp, Target: tag}); err != nil {
		s.Discard()
		return fmt.Errorf("tagging the loaded image %s: %w; it was removed", tag, err)
	}
	s.d.ImageRemove(ctx, s.tmp, client.ImageRemoveOptions{})
	return nil
}

// undo takes back a commit: tag goes back to previous (or away), and the
// image goes when the daemon did not hold it before.
func (s *Staged) Undo(tag, previous string) {
	ctx, cancel := CleanupContext()
	defer cancel()
	if previous != "" {
		s.d.ImageTag(ctx, client.ImageTagOptions{Source: previous, Target: tag})
	} else if s.existed {
		s.d.ImageRemove(ctx, tag, client.ImageRemoveOptions{})
	}
	if !s.existed {
		s.d.ImageRemove(ctx, s.ID, client.ImageRemoveOptions{Force: previous == ""})
	}
}

// verifyLoaded checks that the daemon holds what was assembled: the same
// layers in the same order, under the config digest as ID.
// It returns the image ID as the daemon reports it.
func (d *Docker) verifyLoaded(ctx context.Context, tag string, img v1.Image) (string, error) {
	ins, err := d.ImageInspect(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("checking the loaded image %s: %w", tag, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	want := cfg.RootFS.DiffIDs
	if len(ins.RootFS.Layers) != len(want) {
		return "", fmt.Errorf("loaded %s has %d layers, want %d", tag, len(ins.RootFS.Layers), len(want))
	}
	for i, l := range ins.RootFS.Layers {
		if l != want[i].String() {
			return "", fmt.Errorf("loaded %s: layer %d is %s, want %s", tag, i, l, want[i])
		}
	}
	// On the containerd store the ID is the manifest digest (ggcr #1954),
	// elsewhere the config digest.
	id, _ := img.ConfigName()
	if d.Store == Containerd {
		id, _ = img.Digest()
	}
	if ins.ID != id.String() {
		return "", fmt.Errorf("loaded %s has ID %s, want %s", tag, ins.ID, id)
	}
	if d.Store == Containerd {
		if err := d.contentWhole(ctx, tag, ins.ID); err != nil {
			return "", err
		}
	}
	return ins.ID, nil
}

// contentWhole checks that the containerd image store holds every blob the
// image's manifest lists. A manifest naming a layer blob the store lacks
// still loads, inspects whole and runs (the snapshots are keyed by diff
// ID), but docker save of it silently leaves the layer out. Inspect cannot
// tell; the image list can: Engine 25-27 leave such an image out of it,
// later engines mark its manifest not Available (API 1.47+).
func (d *Docker) contentWhole(ctx context.Context, tag, id string) error {
	res, err := d.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", tag), Manifests: true})
	if err != nil {
		return fmt.Errorf("checking the content of %s: %w", tag, err)
	}
	for _, im := range res.Items {
		if im.ID != id {
			continue
		}
		for _, m := range im.Manifests {
			if m.Kind == image.ManifestKindImage && !m.Available {
				return fmt.Errorf("loaded %s: the engine lacks blobs its manifest %s lists (%d bytes of content present)", tag, m.ID, m.Size.Content)
			}
		}
		return nil
	}
	return fmt.Errorf("loaded %s: the engine does not list it as whole (a blob its manifest names is missing from the content store)", tag)
}
