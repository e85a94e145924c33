package pipeline

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/engine/fake"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"
	"github.com/ds01/ds01/registry"
)

// These tests run the whole pipeline against the fake engine: every
// decision (where the base comes from, what a dry run says, the delta
// and its fallback, replacing and restoring a tag), in milliseconds. The
// same behaviour on real engines is in the *_docker_test.go files.

var user = passwd.Account{Name: "h-baker", UID: 1722830498, GID: 1722830498, Groups: []string{"sudo", "video"}}

// fakeBase is a small Debian-like base: the files the user layer reads.
func fakeBase(t *testing.T, tag string) v1.Image {
	t.Helper()
	var b bytes.Buffer
	err := layers.Write(&b, []layers.Entry{
		{Path: "etc", Type: tar.TypeDir, Mode: 0o755},
		{Path: "etc/passwd", Type: tar.TypeReg, Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/bash\n")},
		{Path: "etc/group", Type: tar.TypeReg, Mode: 0o644, Data: []byte("root:x:0:\nsudo:x:27:\nvideo:x:44:\n")},
		{Path: "etc/shadow", Type: tar.TypeReg, Mode: 0o640, Data: []byte("root:*:19000:0:99999:7:::\n")},
		{Path: "etc/skel", Type: tar.TypeDir, Mode: 0o755},
		{Path: "etc/skel/.bashrc", Type: tar.TypeReg, Mode: 0o644, Data: []byte("# " + tag + "\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: layers.FromBytes(b.Bytes())})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: time.Unix(1700000000, 0).UTC()}
	cfg.Config.Cmd = []string{"bash"}
	img, err = mutate.ConfigFile(mutate.ConfigMediaType(img, types.OCIConfigJSON), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// bed is a fake engine, ds01's cache, and a registry holding the base.
type bed struct {
	e     *fake.Engine
	p     *Pipeline
	cache *registry.Cache
	ref   string // the base in the registry
	base  v1.Image
}

func newBed(t *testing.T, store engine.Store) *bed {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	b := &bed{e: fake.New(store), base: fakeBase(t, "base")}
	b.ref = strings.TrimPrefix(srv.URL, "http://") + "/debian:bookworm"
	r, err := name.ParseReference(b.ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, b.base); err != nil {
		t.Fatal(err)
	}
	d, err := engine.Detect(context.Background(), b.e)
	if err != nil {
		t.Fatal(err)
	}
	b.p = New(d)
	if b.cache, err = registry.OpenCache(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bed) req(project string) CreateRequest {
	return CreateRequest{Login: "h.baker@hertie-school.lan", Account: user, Project: project, BaseRef: b.ref,
		Cache: b.cache, Resolve: source.ResolveOptions{Cache: b.cache}}
}

// inEngine gives the engine the base as a pull would have.
func (b *bed) inEngine(t *testing.T) string {
	t.Helper()
	id, err := b.e.AddImage(b.base, b.ref)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (b *bed) tagged(t *testing.T, tag string) string {
	t.Helper()
	ins, err := b.e.ImageInspect(context.Background(), tag)
	if err != nil {
		return ""
	}
	return ins.ID
}

// The resolution order: the engine, then ds01's cache, then the
// registry; --offline never asks the registry.
func TestCreateResolution(t *testing.T) {
	for _, store := range []engine.Store{engine.GraphDriver, engine.Containerd} {
		for _, tc := range []struct {
			name             string
			inEngine, cached bool
			offline          bool
			from             source.BaseSource
			desc             source.DescriptorKind
			err              error
		}{
			{name: "in the engine", inEngine: true, cached: true, from: source.FromDaemon, desc: source.DescCacheByID},
			{name: "in the cache", cached: true, from: source.FromCache, desc: source.DescStreamed},
			{name: "from the registry", from: source.FromRegistry, desc: source.DescStreamed},
			{name: "offline, nowhere", offline: true, err: source.ErrOffline},
		} {
			t.Run(string(store)+"/"+tc.name, func(t *testing.T) {
				b := newBed(t, store)
				ctx := context.Background()
				if tc.cached {
					if _, err := b.cache.Pull(ctx, b.ref, registry.PullOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				if tc.inEngine {
					b.inEngine(t)
				}
				req := b.req("proj")
				req.Resolve.Offline = tc.offline
				res, err := b.p.Create(ctx, req)
				if tc.err != nil {
					if !errors.Is(err, tc.err) {
						t.Fatalf("err %v, want %v", err, tc.err)
					}
					if b.tagged(t, "ds01-1722830498/proj:latest") != "" {
						t.Error("a failed create left an image")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if res.Resolution.From != tc.from {
					t.Errorf("base from %v, want %v", res.Resolution.From, tc.from)
				}
				want := LoadPath{Kind: LoadDelta, Store: store}
				if store == engine.Containerd {
					want.Descriptors = source.DescriptorSource{Kind: tc.desc}
				}
				if res.Load != want {
					t.Errorf("load %+v, want %+v", res.Load, want)
				}
				if got := b.tagged(t, res.Tag); got != res.ImageID || got == "" {
					t.Errorf("engine holds %s as %q, result says %q", res.Tag, got, res.ImageID)
				}
				if res.Sent > 64<<10 {
					t.Errorf("the delta sent %d bytes", res.Sent)
				}
			})
		}
	}
}

// A dry run loads nothing: with the base in the engine it gives the image
// ID a real run then makes; without, it says what would be fetched.
func TestCreateDryRun(t *testing.T) {
	for _, store := range []engine.Store{engine.GraphDriver, engine.Containerd} {
		for _, tc := range []struct {
			name             string
			inEngine, cached bool
			want             LoadPath
		}{
			{name: "base in the engine", inEngine: true, cached: true, want: LoadPath{Kind: LoadDelta, Store: store, DryRun: true}},
			{name: "base in the cache", cached: true, want: LoadPath{Kind: LoadPending, Store: store, DryRun: true, Pending: PendingStream, From: "taken from ds01's cache (DIGEST)"}},
			{name: "base nowhere", want: LoadPath{Kind: LoadPending, Store: store, DryRun: true, Pending: PendingStream, From: map[engine.Store]string{
				engine.GraphDriver: "pulled from its registry into ds01's cache", engine.Containerd: "pulled into ds01's cache first"}[store]}},
		} {
			t.Run(string(store)+"/"+tc.name, func(t *testing.T) {
				b := newBed(t, store)
				ctx := context.Background()
				if tc.cached {
					pr, err := b.cache.Pull(ctx, b.ref, registry.PullOptions{})
					if err != nil {
						t.Fatal(err)
					}
					tc.want.From = strings.Replace(tc.want.From, "DIGEST", pr.Digest, 1)
				}
				if tc.inEngine {
					b.inEngine(t)
				}
				if tc.want.Kind == LoadDelta && store == engine.Containerd {
					tc.want.Descriptors = source.DescriptorSource{Kind: source.DescCacheByID}
				}
				req := b.req("proj")
				req.DryRun = true
				before := b.e.Calls()
				dry, err := b.p.Create(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if dry.Load != tc.want {
					t.Errorf("dry run says %+v, want %+v", dry.Load, tc.want)
				}
				after := b.e.Calls()
				for _, m := range []string{"ImageLoad", "ImageTag", "ImageRemove"} {
					if after[m] != before[m] {
						t.Errorf("a dry run called %s %d times", m, after[m]-before[m])
					}
				}
				if tc.want.Kind != LoadDelta {
					return
				}
				req.DryRun = false
				real, err := b.p.Create(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if real.ImageID != dry.ImageID {
					t.Errorf("the dry run said %s, the real run made %s", dry.ImageID, real.ImageID)
				}
			})
		}
	}
}

// An existing image is kept without Replace; with it, the old image is
// replaced and removed once nothing uses it.
func TestCreateReplace(t *testing.T) {
	for _, store := range []engine.Store{engine.GraphDriver, engine.Containerd} {
		t.Run(string(store), func(t *testing.T) {
			b := newBed(t, store)
			ctx := context.Background()
			b.inEngine(t)
			req := b.req("proj")
			first, err := b.p.Create(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			req.Env = []string{"A=1"}
			if _, err := b.p.Create(ctx, req); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "ds01 image update proj") {
				t.Fatalf("a second create without Replace: %v", err)
			}
			req.Replace = true
			second, err := b.p.Create(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if second.Replaced != first.ImageID || second.ImageID == first.ImageID {
				t.Errorf("replaced %s by %s, want %s replaced", second.Replaced, second.ImageID, first.ImageID)
			}
			if b.tagged(t, first.ImageID) != "" {
				t.Errorf("the replaced image %s is still there", first.ImageID)
			}
		})
	}
}

// A load that fails, or that the engine takes wrongly, leaves the
// project's tag on the image it had, and nothing else. (On the containerd
// store a wrong image is sent again whole: TestCreateContainerdFallback.)
func TestCreateFailedLoadKeepsTag(t *testing.T) {
	for _, store := range []engine.Store{engine.GraphDriver, engine.Containerd} {
		for _, tc := range []struct {
			name   string
			break_ func(*fake.Engine)
			want   string
		}{
			{"load refused", func(e *fake.Engine) { e.FailNextLoad("no space left on device") }, "no space left on device"},
			{"wrong image loaded", func(e *fake.Engine) { e.CorruptNextLoad() }, "is as it was"},
		} {
			if store == engine.Containerd && tc.name == "wrong image loaded" {
				continue
			}
			t.Run(string(store)+"/"+tc.name, func(t *testing.T) {
				b := newBed(t, store)
				ctx := context.Background()
				b.inEngine(t)
				req := b.req("proj")
				old, err := b.p.Create(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				req.Replace, req.Env = true, []string{"NEW=1"}
				tc.break_(b.e)
				_, err = b.p.Create(ctx, req)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
				if got := b.tagged(t, old.Tag); got != old.ImageID {
					t.Errorf("%s is %s after the failed load, want %s", old.Tag, got, old.ImageID)
				}
				list, err := b.e.ImageList(ctx, client.ImageListOptions{All: true})
				if err != nil {
					t.Fatal(err)
				}
				for _, im := range list.Items {
					for _, tag := range im.RepoTags {
						if strings.Contains(tag, engine.LoadingTag) {
							t.Errorf("left %s", tag)
						}
					}
				}
				if len(list.Items) != 2 {
					t.Errorf("the engine holds %d images, want the base and the old one", len(list.Items))
				}
			})
		}
	}
}

// On the containerd store a delta named by wrong descriptors, or one the
// engine took wrongly, fails its check: the image is sent whole instead,
// and says so.
func TestCreateContainerdFallback(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*bed)
	}{
		{"wrong descriptors", func(b *bed) { WrongBaseDescriptor(b.p) }},
		{"wrong image loaded", func(b *bed) { b.e.CorruptNextLoad() }},
	} {
		t.Run(tc.name, func(t *testing.T) { testContainerdFallback(t, tc.break_) })
	}
}

func testContainerdFallback(t *testing.T, break_ func(*bed)) {
	b := newBed(t, engine.Containerd)
	ctx := context.Background()
	if _, err := b.cache.Pull(ctx, b.ref, registry.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	b.inEngine(t)
	break_(b)
	res, err := b.p.Create(ctx, b.req("proj"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (LoadPath{Kind: LoadFull, Store: engine.Containerd, Why: FullAfterCheck}); res.Load != want {
		t.Errorf("load %+v, want %+v", res.Load, want)
	}
	if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[len(res.Warnings)-1], "the whole image sent instead") {
		t.Errorf("warnings %q", res.Warnings)
	}
	if got := b.tagged(t, res.Tag); got != res.ImageID {
		t.Errorf("engine holds %s as %s, result %s", res.Tag, got, res.ImageID)
	}
}

// The images a user sees, the old flow's committed ones, which
// containers use an image, and retiring: on what the engine holds.
func TestImagesOfAUser(t *testing.T) {
	b := newBed(t, engine.GraphDriver)
	ctx := context.Background()
	b.inEngine(t)
	req := b.req("proj")
	res, err := b.p.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	other := req
	other.Account = passwd.Account{Name: "bob", UID: 5000, GID: 5000}
	other.Project = "theirs"
	if _, err := b.p.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	imgs, err := b.p.ListImages(ctx, user.UID, user.GID)
	if err != nil || len(imgs) != 1 || imgs[0].Tag != res.Tag || imgs[0].Project != "proj" || !imgs[0].Matches || imgs[0].ID != res.ImageID {
		t.Fatalf("images of %d: %+v, %v", user.UID, imgs, err)
	}
	if _, err := b.e.AddImage(b.base, "bash:old._.1722830498", "bash:old._.5000"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uid  *uint32
		want int
	}{{&user.UID, 1}, {nil, 2}} {
		if legacy, err := b.p.LegacyImages(ctx, tc.uid); err != nil || len(legacy) != tc.want {
			t.Errorf("legacy images for %v: %+v, %v; want %d", tc.uid, legacy, err, tc.want)
		}
	}
	if _, err := b.e.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "proj._.1722830498", Config: &container.Config{Image: res.Tag}}); err != nil {
		t.Fatal(err)
	}
	users, err := b.p.ContainersOf(ctx, res.Tag)
	if err != nil || len(users) != 1 || users[0] != "proj._.1722830498" {
		t.Errorf("containers of %s: %v, %v", res.Tag, users, err)
	}
	if err := b.p.RemoveTag(ctx, res.Tag, false); err == nil {
		t.Error("a tag a container uses was removed without force")
	}
	if err := b.p.RemoveTag(ctx, res.Tag, true); err != nil {
		t.Fatal(err)
	}
	if b.tagged(t, res.Tag) != "" {
		t.Errorf("%s is still there", res.Tag)
	}
}

// Through sudo a user may build only on their own images or on bases
// that are nobody's; the shared package images are not bases.
func TestCreateOwnImagesOnly(t *testing.T) {
	b := newBed(t, engine.GraphDriver)
	ctx := context.Background()
	b.inEngine(t)
	other := b.req("theirs")
	other.Account = passwd.Account{Name: "bob", UID: 5000, GID: 5000}
	theirs, err := b.p.Create(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	req := b.req("mine")
	req.OwnImagesOnly = true
	req.BaseRef = theirs.Tag
	if _, err := b.p.Create(ctx, req); !errors.Is(err, record.ErrNotYourImage) {
		t.Errorf("building on another user's image: %v", err)
	}
	req.BaseRef = "ds01-packages/0123456789abcdef0123:latest"
	if _, err := b.p.Create(ctx, req); !errors.Is(err, record.ErrPackageImage) {
		t.Errorf("building on a package image: %v", err)
	}
	req.BaseRef = b.ref
	if _, err := b.p.Create(ctx, req); err != nil {
		t.Errorf("building on a base: %v", err)
	}
}

// A build writes its record; one that cannot be written takes the image
// back, leaving the tag as it was.
func TestCreateRecord(t *testing.T) {
	b := newBed(t, engine.GraphDriver)
	ctx := context.Background()
	b.inEngine(t)
	dir := t.TempDir()
	me := asuser.Cred{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	recs, err := record.OpenRecords(me, dir, "images")
	if err != nil {
		t.Fatal(err)
	}
	defer recs.Close()
	req := b.req("proj")
	req.Records, req.Env, req.Presets = recs, []string{"A=1"}, []string{"jupyter"}
	req.Created = time.Unix(1700000001, 0)
	res, err := b.p.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recs.Read("proj")
	if err != nil || rec.ImageID != res.ImageID || rec.Base.Ref != b.ref || rec.UID != user.UID || rec.Env[0] != "A=1" || *rec.SourceDateEpoch != 1700000001 {
		t.Fatalf("record %+v, %v", rec, err)
	}
	if err := os.Chmod(filepath.Join(dir, "images"), 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(filepath.Join(dir, "images"), 0o755)
	if os.Getuid() == 0 {
		t.Skip("root writes into a read-only directory")
	}
	req.Replace, req.Env = true, []string{"A=2"}
	if _, err := b.p.Create(ctx, req); err == nil || !strings.Contains(err.Error(), "removed again") {
		t.Fatalf("a build whose record cannot be written: %v", err)
	}
	if got := b.tagged(t, res.Tag); got != res.ImageID {
		t.Errorf("%s is %s, want %s back", res.Tag, got, res.ImageID)
	}
}

// Packages: a dry run stops before installing; on the containerd store a
// base the engine does not hold as the cache has it cannot take them.
func TestCreatePackagesPlan(t *testing.T) {
	b := newBed(t, engine.GraphDriver)
	ctx := context.Background()
	b.inEngine(t)
	req := b.req("proj")
	req.DryRun, req.Packages = true, packages.Request{Pip: []string{"numpy"}}
	res, err := b.p.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if want := (LoadPath{Kind: LoadPending, Store: engine.GraphDriver, DryRun: true, Pending: PendingPackages}); res.Load != want {
		t.Errorf("load %+v, want %+v", res.Load, want)
	}
}

// On the containerd store a base the engine holds under descriptors no
// source knows is read out of it once into the cache; the next build
// finds it there.
func TestCreateContainerdExport(t *testing.T) {
	b := newBed(t, engine.Containerd)
	ctx := context.Background()
	b.inEngine(t)
	dry := b.req("proj")
	dry.DryRun = true
	plan, err := b.p.Create(ctx, dry)
	if err != nil || plan.Load.Pending != PendingExport {
		t.Fatalf("dry run: %+v, %v", plan, err)
	}
	first, err := b.p.Create(ctx, b.req("proj"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Load.Descriptors.Kind != source.DescExported || first.Resolution.Exported == 0 || len(first.Warnings) == 0 {
		t.Errorf("first build: %+v %+v %q", first.Load, first.Resolution, first.Warnings)
	}
	again, err := b.p.Create(ctx, b.req("proj2"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Load.Descriptors.Kind != source.DescCacheByID || again.Resolution.Exported != 0 {
		t.Errorf("second build: %+v %+v", again.Load, again.Resolution)
	}
}
