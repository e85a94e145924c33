package registry

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ociTar writes img as docker save does on the containerd image store:
// blobs/sha256/…, index.json, with bad corrupting one blob if set.
func ociTar(t testing.TB, img v1.Image, manifests int, corrupt bool) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	put := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.WriteHeader(&tar.Header{Name: "blobs/sha256/", Mode: 0o755, Typeflag: tar.TypeDir})
	ls, _ := img.Layers()
	for i, l := range ls {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		var lb bytes.Buffer
		lb.ReadFrom(rc)
		rc.Close()
		data := lb.Bytes()
		if corrupt && i == 0 {
			data = append([]byte{'x'}, data[1:]...)
		}
		put("blobs/sha256/"+d.Hex, data)
	}
	cfg, _ := img.RawConfigFile()
	cn, _ := img.ConfigName()
	put("blobs/sha256/"+cn.Hex, cfg)
	raw, _ := img.RawManifest()
	dg, _ := img.Digest()
	put("blobs/sha256/"+dg.Hex, raw)
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for range manifests {
		idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: dg, Size: int64(len(raw))})
	}
	ij, _ := json.Marshal(idx)
	put("index.json", ij)
	tw.Close()
	return b.Bytes()
}

func TestImportArchive(t *testing.T) {
	img, err := random.Image(1<<16, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	for _, tc := range []struct {
		name      string
		archive   []byte
		wantError string
	}{
		{"docker save", ociTar(t, img, 1, false), ""},
		{"corrupt blob", ociTar(t, img, 1, true), "received content with digest"},
		{"two images", ociTar(t, img, 2, false), "lists 2 images"},
		{"not a layout", []byte{}, "no index.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := OpenCache(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			dg, n, err := c.ImportArchive("engine.local/base:1", bytes.NewReader(tc.archive))
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error %v; want %q", err, tc.wantError)
				}
				if _, ok, _ := c.Lookup("engine.local/base:1"); ok {
					t.Error("a failed import left an entry")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dg != want.String() || n != int64(len(tc.archive)) {
				t.Errorf("imported %s (%d bytes read); want %s (%d)", dg, n, want, len(tc.archive))
			}
			e, ok, _ := c.Lookup("engine.local/base:1")
			if !ok || e.Digest != want.String() {
				t.Fatalf("entry %+v, %v", e, ok)
			}
			got, err := c.ImageFor(e.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if gd, _ := got.Digest(); gd != want {
				t.Errorf("cached image %s; want %s", gd, want)
			}
		})
	}
}

func FuzzImportArchive(f *testing.F) {
	img, err := random.Image(256, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ociTar(f, img, 1, false))
	f.Add(ociTar(f, img, 1, true))
	f.Add([]byte("index.json"))
	// One cache for the run: opening one per input makes the fuzzer crawl.
	c, err := OpenCache(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	f.Fuzz(func(t *testing.T, archive []byte) {
		n++
		ref := fmt.Sprintf("engine.local/base:%d", n)
		dg, _, err := c.ImportArchive(ref, bytes.NewReader(archive))
		e, ok, _ := c.Lookup(ref)
		if (err == nil) != ok || (ok && e.Digest != dg) {
			t.Fatalf("error %v, entry %+v %v", err, e, ok)
		}
		if ok {
			if _, err := c.ImageFor(dg); err != nil {
				t.Fatalf("imported %s does not open: %v", dg, err)
			}
		}
	})
}
