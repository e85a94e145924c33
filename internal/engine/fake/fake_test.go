package fake_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/engine/fake"
	"github.com/ds01/ds01/layers"
)

var stores = []engine.Store{engine.GraphDriver, engine.Containerd}

// plain is a plain-tar layer of entries.
func plain(t *testing.T, es ...layers.Entry) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	if err := layers.Write(&b, es); err != nil {
		t.Fatal(err)
	}
	return layers.FromBytes(b.Bytes())
}

// gzipped is the same layer as a pull leaves it: gzip, another digest,
// the same diff ID.
func gzipped(t *testing.T, l v1.Layer) v1.Layer {
	t.Helper()
	g, err := tarball.LayerFromOpener(l.Uncompressed)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func imageOf(t *testing.T, label string, ls ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range ls {
		var err error
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "layer " + label}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: time.Unix(1700000000, 0)}
	cfg.Config.Labels = map[string]string{"test.image": label}
	cfg.Config.Cmd = []string{"bash"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func baseLayer(t *testing.T) v1.Layer {
	return plain(t,
		layers.Entry{Path: "etc", Type: tar.TypeDir, Mode: 0o755},
		layers.Entry{Path: "etc/passwd", Type: tar.TypeReg, Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/bash\n")},
		layers.Entry{Path: "etc/group", Type: tar.TypeReg, Mode: 0o644, Data: []byte("root:x:0:\n")},
		layers.Entry{Path: "etc/gone", Type: tar.TypeReg, Mode: 0o644, Data: []byte("x")},
		layers.Entry{Path: "etc/skel", Type: tar.TypeDir, Mode: 0o755},
		layers.Entry{Path: "etc/skel/.bashrc", Type: tar.TypeReg, Mode: 0o644, Data: []byte("# bashrc\n")},
		layers.Entry{Path: "etc/alt", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "passwd"},
		layers.Entry{Path: "etc/passwd.link", Type: tar.TypeLink, Mode: 0o644, Linkname: "etc/passwd"},
		layers.Entry{Path: "lib", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "usr/lib"},
		layers.Entry{Path: "usr", Type: tar.TypeDir, Mode: 0o755},
		layers.Entry{Path: "usr/lib", Type: tar.TypeDir, Mode: 0o755},
		layers.Entry{Path: "usr/lib/os-release", Type: tar.TypeReg, Mode: 0o644, Data: []byte("ID=fake\n")},
	)
}

func userLayer(t *testing.T, who string) v1.Layer {
	return plain(t,
		layers.Entry{Path: "etc", Type: tar.TypeDir, Mode: 0o755},
		layers.Entry{Path: "etc/.wh.gone", Type: tar.TypeReg, Mode: 0o644},
		layers.Entry{Path: "etc/group", Type: tar.TypeReg, Mode: 0o644, Data: []byte("root:x:0:\n" + who + ":x:1000:\n")},
	)
}

func detect(t *testing.T, e *fake.Engine) *engine.Docker {
	t.Helper()
	d, err := engine.Detect(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustID(t *testing.T, f func() (v1.Hash, error)) string {
	t.Helper()
	h, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestDetectAndIDs(t *testing.T) {
	ctx := context.Background()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		store engine.Store
		want  string
	}{
		{engine.GraphDriver, mustID(t, img.ConfigName)},
		{engine.Containerd, mustID(t, img.Digest)},
	} {
		t.Run(string(tc.store), func(t *testing.T) {
			e := fake.New(tc.store)
			d := detect(t, e)
			if d.Store != tc.store || d.Driver == "" {
				t.Errorf("Detect: store %q driver %q; want %q", d.Store, d.Driver, tc.store)
			}
			if want, _ := d.ExpectedID(img); want != tc.want {
				t.Errorf("ExpectedID %s; want %s", want, tc.want)
			}
			id, err := e.AddImage(img, "example.com/x/y:1", "debian")
			if err != nil || id != tc.want {
				t.Fatalf("AddImage: %s, %v; want ID %s", id, err, tc.want)
			}
			for _, ref := range []string{id, strings.TrimPrefix(id, "sha256:")[:12], "example.com/x/y:1", "debian:latest", "docker.io/library/debian"} {
				ins, err := e.ImageInspect(ctx, ref)
				if err != nil || ins.ID != tc.want {
					t.Errorf("inspect %s: %s, %v", ref, ins.ID, err)
				}
			}
			ins, _ := e.ImageInspect(ctx, id)
			if strings.Join(ins.RepoTags, ",") != "debian:latest,example.com/x/y:1" || len(ins.RootFS.Layers) != 2 {
				t.Errorf("inspect: tags %v, layers %v", ins.RepoTags, ins.RootFS.Layers)
			}
			for _, ref := range []string{"nothing:here", "sha256:" + strings.Repeat("0", 64), "0000"} {
				if _, err := e.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such image") {
					t.Errorf("inspect %s: %v; want not found", ref, err)
				}
			}
		})
	}
}

// TestDeltaLoad loads an image whose base layer is left out of the
// archive, with and without the base in the engine, on each store.
func TestDeltaLoad(t *testing.T) {
	ctx := context.Background()
	bl := baseLayer(t)
	for _, tc := range []struct {
		name    string
		store   engine.Store
		held    v1.Layer // how the engine holds the base, nil: not at all
		opts    []fake.Option
		wantErr string
		whole   bool // listed with every blob (Available)
		listed  bool
	}{
		{name: "graphdriver/held", store: engine.GraphDriver, held: bl, whole: true, listed: true},
		{name: "graphdriver/held-gzip", store: engine.GraphDriver, held: gzipped(t, bl), whole: true, listed: true},
		{name: "graphdriver/missing", store: engine.GraphDriver, wantErr: "no such file or directory"},
		{name: "containerd/held", store: engine.Containerd, held: bl, whole: true, listed: true},
		{name: "containerd/held-other-descriptor", store: engine.Containerd, held: gzipped(t, bl), listed: true},
		{name: "containerd/held-other-descriptor/engine-27", store: engine.Containerd, held: gzipped(t, bl), opts: []fake.Option{fake.OmitIncomplete()}},
		{name: "containerd/missing", store: engine.Containerd, wantErr: "content digest " + mustID(t, bl.Digest) + ": not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := fake.New(tc.store, tc.opts...)
			d := detect(t, e)
			if tc.held != nil {
				if _, err := e.AddImage(imageOf(t, "base", tc.held), "base:1"); err != nil {
					t.Fatal(err)
				}
			}
			img := imageOf(t, "user", bl, userLayer(t, "alice"))
			baseID := mustID(t, bl.DiffID)
			st, err := d.Load(ctx, img, "ds01-5/p:latest", func(h v1.Hash) bool { return h.String() == baseID })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "docker load") {
					t.Errorf("load: %v; want an error with %q", err, tc.wantErr)
				}
				if _, err := e.ImageInspect(ctx, "ds01-5/p:latest"); !cerrdefs.IsNotFound(err) {
					t.Errorf("a failed load left an image: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Sent <= 0 || st.Sent != e.LoadedBytes() || st.Sent >= 1<<20 {
				t.Errorf("sent %d, the engine read %d", st.Sent, e.LoadedBytes())
			}
			want, _ := d.ExpectedID(img)
			ins, err := e.ImageInspect(ctx, "ds01-5/p:latest")
			if err != nil || ins.ID != want || len(ins.RootFS.Layers) != 2 {
				t.Fatalf("inspect: %s %v, %v; want %s with 2 layers", ins.ID, ins.RootFS.Layers, err, want)
			}
			list, err := e.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", "ds01-5/p"), Manifests: true})
			if err != nil {
				t.Fatal(err)
			}
			if (len(list.Items) == 1) != tc.listed {
				t.Fatalf("listed %d images; want listed %v", len(list.Items), tc.listed)
			}
			if tc.store == engine.Containerd && tc.listed {
				if ms := list.Items[0].Manifests; len(ms) != 1 || ms[0].Available != tc.whole || ms[0].ID != want {
					t.Errorf("manifests %+v; want one, Available %v", ms, tc.whole)
				}
			}
			// What docker save gives: every layer, unless the store lacks a blob.
			saved := savedBlobs(t, e, "ds01-5/p:latest")
			top, _ := img.Layers()
			for _, l := range top {
				dg, _ := l.Digest()
				if tc.store == engine.GraphDriver {
					dg, _ = l.DiffID()
				}
				if _, ok := saved["blobs/sha256/"+dg.Hex]; !ok && (tc.whole || l != top[0]) {
					t.Errorf("docker save left out layer %s", dg)
				}
				if _, ok := saved["blobs/sha256/"+dg.Hex]; ok && !tc.whole && l == top[0] {
					t.Errorf("docker save carried layer %s the store lacks", dg)
				}
			}
		})
	}
}

func savedBlobs(t *testing.T, e *fake.Engine, ref string) map[string]bool {
	t.Helper()
	rc, err := e.ImageSave(context.Background(), []string{ref})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = true
	}
}

// TestSaveLoad: what one engine saves, another loads as the same image.
func TestSaveLoad(t *testing.T) {
	ctx := context.Background()
	for _, store := range stores {
		t.Run(string(store), func(t *testing.T) {
			a, b := fake.New(store), fake.New(store)
			img := imageOf(t, "x", gzipped(t, baseLayer(t)), userLayer(t, "bob"))
			id, err := a.AddImage(img, "x:1")
			if err != nil {
				t.Fatal(err)
			}
			rc, err := a.ImageSave(ctx, []string{id})
			if err != nil {
				t.Fatal(err)
			}
			res, err := b.ImageLoad(ctx, rc)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(res)
			if !strings.Contains(string(msg), `{"stream":"Loaded image: x:1\n"}`) {
				t.Errorf("load said %s", msg)
			}
			if ins, err := b.ImageInspect(ctx, "x:1"); err != nil || ins.ID != id {
				t.Errorf("loaded %s, %v; want %s", ins.ID, err, id)
			}
			if _, err := a.ImageSave(ctx, []string{"x:1", "x:1"}); err == nil {
				t.Error("saved two refs at once")
			}
		})
	}
}

func loadTagged(t *testing.T, e *fake.Engine, img v1.Image, tag string) string {
	t.Helper()
	var b bytes.Buffer
	if err := engine.WriteArchive(&b, img, tag, nil); err != nil {
		t.Fatal(err)
	}
	res, err := e.ImageLoad(context.Background(), &b)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(res)
	return string(msg)
}

func TestTagReplacement(t *testing.T) {
	ctx := context.Background()
	for _, store := range stores {
		t.Run(string(store), func(t *testing.T) {
			e := fake.New(store)
			d := detect(t, e)
			a, b := imageOf(t, "a", baseLayer(t)), imageOf(t, "b", baseLayer(t), userLayer(t, "bob"))
			aID, _ := d.ExpectedID(a)
			bID, _ := d.ExpectedID(b)
			loadTagged(t, e, a, "p:latest")
			msg := loadTagged(t, e, b, "p")
			if renamed := strings.Contains(msg, "renaming the old one with ID "+aID); renamed != (store == engine.GraphDriver) {
				t.Errorf("load said %q", msg)
			}
			if ins, _ := e.ImageInspect(ctx, "p:latest"); ins.ID != bID {
				t.Errorf("p:latest is %s; want %s", ins.ID, bID)
			}
			old, err := e.ImageInspect(ctx, aID)
			if err != nil || len(old.RepoTags) != 0 {
				t.Errorf("the replaced image: tags %v, %v; want kept, untagged", old.RepoTags, err)
			}
			if _, err := e.ImageTag(ctx, client.ImageTagOptions{Source: aID, Target: "p:latest"}); err != nil {
				t.Fatal(err)
			}
			if ins, _ := e.ImageInspect(ctx, "p:latest"); ins.ID != aID {
				t.Errorf("after tagging back p:latest is %s; want %s", ins.ID, aID)
			}
			for _, target := range []string{"Bad:Name", "p@sha256:" + strings.Repeat("a", 64)} {
				if _, err := e.ImageTag(ctx, client.ImageTagOptions{Source: aID, Target: target}); err == nil {
					t.Errorf("tagged %s", target)
				}
			}
			if _, err := e.ImageTag(ctx, client.ImageTagOptions{Source: "nothing", Target: "p:2"}); !cerrdefs.IsNotFound(err) {
				t.Errorf("tag of a missing image: %v", err)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		tags      []string
		container string // "", "stopped", "running"
		ref       string // "id" for the image ID
		force     bool
		wantErr   string
		kept      bool     // the image is still there
		tagsLeft  []string // its tags after
	}{
		{name: "one of two tags", tags: []string{"a:1", "a:2"}, ref: "a:1", kept: true, tagsLeft: []string{"a:2"}},
		{name: "last tag", tags: []string{"a:1"}, ref: "a:1"},
		{name: "last tag, stopped container", tags: []string{"a:1"}, container: "stopped", ref: "a:1", wantErr: "unable to remove repository reference", kept: true, tagsLeft: []string{"a:1"}},
		{name: "last tag, stopped container, forced", tags: []string{"a:1"}, container: "stopped", ref: "a:1", force: true},
		{name: "ID, two repositories", tags: []string{"a:1", "b:1"}, ref: "id", wantErr: "referenced in multiple repositories", kept: true, tagsLeft: []string{"a:1", "b:1"}},
		{name: "ID, two repositories, forced", tags: []string{"a:1", "b:1"}, ref: "id", force: true},
		{name: "ID, one tag", tags: []string{"a:1"}, ref: "id"},
		{name: "ID, stopped container", tags: []string{"a:1"}, container: "stopped", ref: "id", wantErr: "being used by stopped container", kept: true, tagsLeft: []string{"a:1"}},
		{name: "ID, running container, forced", tags: []string{"a:1"}, container: "running", ref: "id", force: true, wantErr: "(cannot be forced) - image is being used by running container", kept: true, tagsLeft: []string{"a:1"}},
		{name: "untagged ID", ref: "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := fake.New(engine.GraphDriver)
			id, err := e.AddImage(imageOf(t, "r", baseLayer(t)), tc.tags...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.container != "" {
				c, err := e.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: id}})
				if err != nil {
					t.Fatal(err)
				}
				if tc.container == "running" {
					e.ContainerStart(ctx, c.ID, client.ContainerStartOptions{})
				}
			}
			ref := tc.ref
			if ref == "id" {
				ref = id
			}
			_, err = e.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: tc.force})
			if tc.wantErr != "" && (!cerrdefs.IsConflict(err) || !strings.Contains(err.Error(), tc.wantErr)) || tc.wantErr == "" && err != nil {
				t.Errorf("remove: %v; want %q", err, tc.wantErr)
			}
			ins, err := e.ImageInspect(ctx, id)
			if (err == nil) != tc.kept {
				t.Fatalf("image kept: %v; want %v", err == nil, tc.kept)
			}
			if tc.kept && strings.Join(ins.RepoTags, ",") != strings.Join(tc.tagsLeft, ",") {
				t.Errorf("tags left %v; want %v", ins.RepoTags, tc.tagsLeft)
			}
		})
	}
	if _, err := fake.New(engine.Containerd).ImageRemove(ctx, "nothing", client.ImageRemoveOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("remove of nothing: %v", err)
	}
}

// TestRemovedBaseIsGone: with its image gone, a base's layers are too, and
// a delta onto it fails again.
func TestRemovedBaseIsGone(t *testing.T) {
	ctx := context.Background()
	for _, store := range stores {
		t.Run(string(store), func(t *testing.T) {
			e := fake.New(store)
			d := detect(t, e)
			bl := baseLayer(t)
			if _, err := e.AddImage(imageOf(t, "base", bl), "base:1"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.ImageRemove(ctx, "base:1", client.ImageRemoveOptions{}); err != nil {
				t.Fatal(err)
			}
			baseID := mustID(t, bl.DiffID)
			if _, err := d.Load(ctx, imageOf(t, "user", bl, userLayer(t, "x")), "p:1", func(h v1.Hash) bool { return h.String() == baseID }); err == nil {
				t.Error("a delta loaded onto a removed base")
			}
		})
	}
}

func untar(t *testing.T, r io.Reader) (names []string, data map[string]string, hdrs map[string]*tar.Header) {
	t.Helper()
	data, hdrs = map[string]string{}, map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, data, hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		data[h.Name], hdrs[h.Name] = string(b), h
	}
}

func TestCopyFromContainer(t *testing.T) {
	ctx := context.Background()
	for _, store := range stores {
		t.Run(string(store), func(t *testing.T) {
			e := fake.New(store)
			if _, err := e.AddImage(imageOf(t, "u", gzipped(t, baseLayer(t)), userLayer(t, "alice")), "u:1"); err != nil {
				t.Fatal(err)
			}
			c, err := e.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: "u:1", Entrypoint: []string{"/never"}}})
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				path  string
				names string
				file  string // name=content of one entry
				link  string // the stat's link target
			}{
				{"/etc/passwd", "passwd", "passwd=root:x:0:0:root:/root:/bin/bash\n", ""},
				{"/etc/passwd.link", "passwd.link", "passwd.link=root:x:0:0:root:/root:/bin/bash\n", ""},
				{"/etc", "etc/,etc/alt,etc/group,etc/passwd,etc/passwd.link,etc/skel/,etc/skel/.bashrc", "etc/group=root:x:0:\nalice:x:1000:\n", ""},
				{"/etc/skel", "skel/,skel/.bashrc", "skel/.bashrc=# bashrc\n", ""},
				{"/etc/alt", "alt", "alt=", "/etc/passwd"},
				{"/lib/os-release", "os-release", "os-release=ID=fake\n", ""},
			} {
				res, err := e.CopyFromContainer(ctx, c.ID, client.CopyFromContainerOptions{SourcePath: tc.path})
				if err != nil {
					t.Fatalf("%s: %v", tc.path, err)
				}
				names, data, _ := untar(t, res.Content)
				name, content, _ := strings.Cut(tc.file, "=")
				if strings.Join(names, ",") != tc.names || data[name] != content {
					t.Errorf("%s: entries %v, %s=%q", tc.path, names, name, data[name])
				}
				st, err := e.ContainerStatPath(ctx, c.ID, client.ContainerStatPathOptions{Path: tc.path})
				if err != nil || st.Stat.Name != res.Stat.Name || st.Stat.LinkTarget != tc.link || res.Stat.LinkTarget != tc.link {
					t.Errorf("%s: stat %+v, %v; copy's stat %+v; want link %q", tc.path, st.Stat, err, res.Stat, tc.link)
				}
			}
			for _, p := range []string{"/etc/gone", "/nothing", "/etc/passwd/x"} {
				if _, err := e.CopyFromContainer(ctx, c.ID, client.CopyFromContainerOptions{SourcePath: p}); !cerrdefs.IsNotFound(err) {
					t.Errorf("%s: %v; want not found", p, err)
				}
			}
			// What is copied in is seen by the copy out, and in the diff.
			var in bytes.Buffer
			layers.Write(&in, []layers.Entry{{Path: "new", Type: tar.TypeReg, Mode: 0o600, Data: []byte("hello")}})
			if _, err := e.CopyToContainer(ctx, c.ID, client.CopyToContainerOptions{DestinationPath: "/etc/skel", Content: &in}); err != nil {
				t.Fatal(err)
			}
			res, err := e.CopyFromContainer(ctx, c.ID, client.CopyFromContainerOptions{SourcePath: "/etc/skel/new"})
			if err != nil {
				t.Fatal(err)
			}
			if _, data, _ := untar(t, res.Content); data["new"] != "hello" || res.Stat.Mode.Perm() != 0o600 {
				t.Errorf("copied in: %q, mode %v", data["new"], res.Stat.Mode)
			}
			diff, _ := e.ContainerDiff(ctx, c.ID, client.ContainerDiffOptions{})
			if len(diff.Changes) != 1 || diff.Changes[0].Path != "/etc/skel/new" {
				t.Errorf("diff %+v", diff.Changes)
			}
			if _, err := e.CopyToContainer(ctx, c.ID, client.CopyToContainerOptions{DestinationPath: "/etc/passwd", Content: &in}); err == nil {
				t.Error("copied into a file")
			}
		})
	}
}

// TestStage runs ds01's staged load against each store: load under a
// temporary tag, check, commit; a second image over the tag, then undo.
func TestStage(t *testing.T) {
	ctx := context.Background()
	for _, store := range stores {
		t.Run(string(store), func(t *testing.T) {
			e := fake.New(store)
			d := detect(t, e)
			bl := baseLayer(t)
			if _, err := e.AddImage(imageOf(t, "base", bl), "base:1"); err != nil {
				t.Fatal(err)
			}
			baseID := mustID(t, bl.DiffID)
			omit := func(h v1.Hash) bool { return h.String() == baseID }
			const tag = "ds01-5/p:latest"
			first := imageOf(t, "first", bl, userLayer(t, "alice"))
			s, st, err := d.Stage(ctx, first, tag, omit, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(tag); err != nil {
				t.Fatal(err)
			}
			firstID, _ := d.ExpectedID(first)
			if ins, _ := e.ImageInspect(ctx, tag); ins.ID != firstID || s.ID != firstID || len(ins.RepoTags) != 1 {
				t.Errorf("%s is %s %v; staged %s; want %s alone", tag, ins.ID, ins.RepoTags, s.ID, firstID)
			}
			if e.Calls()["ImageLoad"] != 1 || st.Sent != e.LoadedBytes() {
				t.Errorf("calls %v, sent %d, read %d", e.Calls(), st.Sent, e.LoadedBytes())
			}
			second := imageOf(t, "second", bl, userLayer(t, "bob"))
			s2, _, err := d.Stage(ctx, second, tag, omit, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s2.Commit(tag); err != nil {
				t.Fatal(err)
			}
			s2.Undo(tag, firstID)
			if ins, _ := e.ImageInspect(ctx, tag); ins.ID != firstID {
				t.Errorf("after undo %s is %s; want %s", tag, ins.ID, firstID)
			}
			if _, err := e.ImageInspect(ctx, s2.ID); !cerrdefs.IsNotFound(err) {
				t.Errorf("the undone image is still there: %v", err)
			}
			assertOnly(t, e, "ds01-5/p:*", tag)
		})
	}
}

// assertOnly says that the tags matching pattern are want.
func assertOnly(t *testing.T, e *fake.Engine, pattern string, want ...string) {
	t.Helper()
	list, err := e.ImageList(context.Background(), client.ImageListOptions{Filters: make(client.Filters).Add("reference", pattern)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, im := range list.Items {
		got = append(got, im.RepoTags...)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("tags %v; want %v", got, want)
	}
}

// TestStageFailures: a load the engine refuses and one it gets wrong both
// leave nothing, and only the latter is a failed check.
func TestStageFailures(t *testing.T) {
	ctx := context.Background()
	for _, store := range stores {
		for _, tc := range []struct {
			name    string
			hook    func(*fake.Engine)
			wantErr string
			check   bool
		}{
			{"refused", func(e *fake.Engine) { e.FailNextLoad("write /var/lib/docker/tmp: no space left on device") }, "no space left on device", false},
			{"corrupt", (*fake.Engine).CorruptNextLoad, "want", true},
			{"wrong descriptor", nil, "lacks blobs", true},
		} {
			if tc.hook == nil && store != engine.Containerd {
				continue
			}
			t.Run(string(store)+"/"+tc.name, func(t *testing.T) {
				e := fake.New(store)
				d := detect(t, e)
				bl := baseLayer(t)
				if _, err := e.AddImage(imageOf(t, "base", gzipped(t, bl)), "base:1"); err != nil {
					t.Fatal(err)
				}
				onto := bl // named by its plain descriptor: a wrong one on containerd
				if tc.hook != nil {
					tc.hook(e)
					onto = gzipped(t, bl)
				}
				baseID := mustID(t, bl.DiffID)
				_, _, err := d.Stage(ctx, imageOf(t, "u", onto, userLayer(t, "x")), "ds01-5/p:latest", func(h v1.Hash) bool { return h.String() == baseID }, nil)
				var cf engine.CheckFailed
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.As(err, &cf) != tc.check {
					t.Errorf("stage: %v; want %q, a failed check: %v", err, tc.wantErr, tc.check)
				}
				assertOnly(t, e, "ds01-5/*")
				if list, _ := e.ImageList(ctx, client.ImageListOptions{}); len(list.Items) != 1 {
					t.Errorf("%d images left; want the base alone", len(list.Items))
				}
			})
		}
	}
}

func TestImageListFilters(t *testing.T) {
	ctx := context.Background()
	e := fake.New(engine.GraphDriver)
	a, b := imageOf(t, "a", baseLayer(t)), imageOf(t, "b", userLayer(t, "b"))
	e.AddImage(a, "ds01-5/a:latest", "other/a:1")
	e.AddImage(b, "ds01-6/b:latest")
	for _, tc := range []struct {
		filters client.Filters
		want    string
	}{
		{make(client.Filters).Add("reference", "ds01-5/*"), "ds01-5/a:latest"},
		{make(client.Filters).Add("reference", "ds01-*/*:latest"), "ds01-5/a:latest ds01-6/b:latest"},
		{make(client.Filters).Add("label", "test.image=b"), "ds01-6/b:latest"},
		{make(client.Filters).Add("label", "test.image"), "ds01-5/a:latest,other/a:1 ds01-6/b:latest"},
		{make(client.Filters).Add("label", "test.image=c"), ""},
		{make(client.Filters).Add("dangling", "true"), ""},
	} {
		list, err := e.ImageList(ctx, client.ImageListOptions{Filters: tc.filters})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, im := range list.Items {
			got = append(got, strings.Join(im.RepoTags, ","))
		}
		if strings.Join(got, " ") != tc.want && strings.Join(reverse(got), " ") != tc.want {
			t.Errorf("%v: %v; want %s", tc.filters, got, tc.want)
		}
	}
	if _, err := e.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("before", "x")}); err == nil {
		t.Error("an unknown filter was taken")
	}
	h, err := e.ImageHistory(ctx, "ds01-6/b")
	if err != nil || len(h.Items) != 1 || h.Items[0].CreatedBy != "layer b" || !strings.HasPrefix(h.Items[0].ID, "sha256:") || h.Items[0].Size == 0 {
		t.Errorf("history %+v, %v", h.Items, err)
	}
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestContainers(t *testing.T) {
	ctx := context.Background()
	e := fake.New(engine.Containerd)
	id, _ := e.AddImage(imageOf(t, "c", baseLayer(t)), "c:1")
	mk := func(name string, labels map[string]string) (string, error) {
		r, err := e.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: &container.Config{Image: "c:1", Labels: labels},
			HostConfig: &container.HostConfig{NetworkMode: "none", Binds: []string{"/src:/workspace:ro"}}})
		return r.ID, err
	}
	one, err := mk("one", map[string]string{"ds01.managed": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mk("one", nil); !cerrdefs.IsConflict(err) || !strings.Contains(err.Error(), `The container name "/one" is already in use`) {
		t.Errorf("same name again: %v", err)
	}
	if _, err := mk("-bad name", nil); err == nil {
		t.Error("a bad name was taken")
	}
	if _, err := e.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: "missing:1"}}); !cerrdefs.IsNotFound(err) {
		t.Errorf("create of a missing image: %v", err)
	}
	mk("", nil)
	ins, err := e.ContainerInspect(ctx, "one", client.ContainerInspectOptions{})
	if err != nil || ins.Container.ID != one || ins.Container.Image != id || ins.Container.Config.Labels["test.image"] != "c" ||
		ins.Container.Config.Labels["ds01.managed"] != "true" || ins.Container.State.Status != container.StateCreated ||
		len(ins.Container.Mounts) != 1 || ins.Container.Mounts[0].RW || ins.Container.Path != "bash" {
		t.Errorf("inspect: %+v, %v", ins.Container, err)
	}
	list := func(all bool, f client.Filters) string {
		res, err := e.ContainerList(ctx, client.ContainerListOptions{All: all, Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range res.Items {
			out = append(out, c.ID)
		}
		return strings.Join(out, ",")
	}
	if got := list(true, make(client.Filters).Add("label", "ds01.managed=true")); got != one {
		t.Errorf("label filter: %s", got)
	}
	if got := list(true, make(client.Filters).Add("name", "^/one$")); got != one {
		t.Errorf("name filter: %s", got)
	}
	if got := list(true, make(client.Filters).Add("ancestor", "c:1")); len(got) != 129 {
		t.Errorf("ancestor filter: %s", got)
	}
	if got := list(false, nil); got != "" {
		t.Errorf("running before start: %s", got)
	}
	e.ContainerStart(ctx, one, client.ContainerStartOptions{})
	if got := list(false, nil); got != one {
		t.Errorf("running: %s", got)
	}
	if n := e.Calls()["ContainerCreate"]; n != 5 {
		t.Errorf("%d creates counted; want 5", n)
	}
}

func TestContainerLifecycle(t *testing.T) {
	ctx := context.Background()
	e := fake.New(engine.GraphDriver)
	e.AddImage(imageOf(t, "c", baseLayer(t)), "c:1")
	mk := func() string {
		r, err := e.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: "c:1"}})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	one, two := mk(), mk()
	e.ContainerStart(ctx, one, client.ContainerStartOptions{})
	if _, err := e.ContainerRemove(ctx, one, client.ContainerRemoveOptions{}); !cerrdefs.IsConflict(err) {
		t.Errorf("remove of a running container: %v", err)
	}
	wait := e.ContainerWait(ctx, one, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	e.ContainerStop(ctx, one, client.ContainerStopOptions{})
	select {
	case r := <-wait.Result:
		if r.StatusCode != 137 {
			t.Errorf("exit code %d", r.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not end at stop")
	}
	removed := e.ContainerWait(ctx, two, client.ContainerWaitOptions{Condition: container.WaitConditionRemoved})
	e.ContainerStart(ctx, two, client.ContainerStartOptions{})
	if _, err := e.ContainerRemove(ctx, two[:12], client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-removed.Result:
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not end at remove")
	}
	if _, err := e.ContainerInspect(ctx, two, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("inspect of a removed container: %v", err)
	}
	logs, err := e.ContainerLogs(ctx, one, client.ContainerLogsOptions{})
	if b, _ := io.ReadAll(logs); err != nil || len(b) != 0 {
		t.Errorf("logs %q, %v", b, err)
	}
	if _, err := e.ExecCreate(ctx, one, client.ExecCreateOptions{Cmd: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "not supported by the fake engine") {
		t.Errorf("exec: %v", err)
	}
	ev := e.Events(ctx, client.EventsListOptions{})
	if _, ok := <-ev.Messages; ok {
		t.Error("an event")
	}
	if e.DaemonHost() != "fake://" || e.Close() != nil {
		t.Error("host or close")
	}
}
