package deploy

import (
	"archive/tar"
	"context"
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
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	if c.progress != nil {
		c.progress(int64(n))
	}
	return n, err
}

// Load streams img into the daemon tagged tag; omit is as in WriteArchive.
func (d *Daemon) Load(ctx context.Context, img v1.Image, tag string, omit func(v1.Hash) bool) (LoadStats, error) {
	return d.LoadWithProgress(ctx, img, tag, omit, nil)
}

// LoadWithProgress is Load telling progress of every chunk sent.
func (d *Daemon) LoadWithProgress(ctx context.Context, img v1.Image, tag string, omit func(v1.Hash) bool, progress func(n int64)) (LoadStats, error) {
	pr, pw := io.Pipe()
	cw := &countingWriter{w: pw, progress: progress}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(WriteArchive(cw, img, tag, omit))
	}()
	res, err := d.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		<-done
		return LoadStats{Sent: cw.n.Load()}, fmt.Errorf("docker load of %s: %w", tag, err)
	}
	defer res.Close()
	err = readMessages(res)
	pr.CloseWithError(io.ErrClosedPipe) // the writer stops if the daemon stopped reading
	<-done
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
