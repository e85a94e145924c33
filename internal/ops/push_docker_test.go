package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/testbed"
)

// counting is a registry behind a reverse proxy that counts the bytes
// of uploads (PUT and PATCH bodies) and of blobs downloaded.
type counting struct {
	host              string
	uploaded, fetched atomic.Int64
}

func countingRegistry(t *testing.T) *counting {
	reg := testbed.StartRegistry(t)
	c := &counting{}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: reg.Host})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut || r.Method == http.MethodPatch {
			r.Body = countedReader{r.Body, &c.uploaded}
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			w = countedWriter{w, &c.fetched}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		// A reader that left a blob half read (go-containerregistry peeks
		// at layers) would keep Close waiting.
		srv.CloseClientConnections()
		srv.Close()
	})
	c.host = strings.TrimPrefix(srv.URL, "http://")
	return c
}

type countedReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countedReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countedWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countedWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// A user image whose base the registry holds is pushed as its user layer,
// config and manifest alone (the base mounted across repositories), and
// pulled back, under another project, into the engine that holds the
// base without downloading the base: the same image, run as the user.
// Another UID's image is refused.
func TestPushPull(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	reg := countingRegistry(t)
	prefix := testbed.Prefix(t)
	baseRef := reg.host + "/" + prefix + "/bullseye:1"
	br, _ := name.ParseReference(baseRef)
	if err := remote.Write(br, testbed.Base(t, testbed.Bullseye)); err != nil {
		t.Fatal(err)
	}
	testbed.RemoveImage(t, d, baseRef)
	o := &Ops{D: d, Version: "test", ConfigDir: t.TempDir(), CacheDir: t.TempDir()}
	id := identity.Identity{Login: "h.baker@hertie-school.lan", Name: "h-baker", UID: 1722830498, GID: 1722830498, Root: true}
	p1, p2 := prefix+"-a", prefix+"-b"
	tag1, tag2 := "ds01-1722830498/"+p1+":latest", "ds01-1722830498/"+p2+":latest"
	testbed.RemoveImage(t, d, tag1)
	testbed.RemoveImage(t, d, tag2)
	made, err := o.CreateImage(ctx, id, ImageCreate{Project: p1, BaseRef: baseRef}, Events{})
	if err != nil {
		t.Fatal(err)
	}

	reg.uploaded.Store(0)
	to := reg.host + "/" + prefix + "/ds01-1722830498/" + p1
	res, err := o.PushImage(ctx, id, ImagePush{Project: p1, To: to}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := name.ParseReference(res.Ref)
	pushed, err := remote.Image(pr)
	if err != nil {
		t.Fatal(err)
	}
	cfgName, _ := pushed.ConfigName()
	rawM, _ := pushed.RawManifest()
	m, _ := pushed.Manifest()
	user := m.Layers[len(m.Layers)-1].Size
	want := user + m.Config.Size + int64(len(rawM))
	if cfgName.String() != made.ImageID || res.ImageID != made.ImageID {
		t.Errorf("pushed config %s, image %s; the local image is %s", cfgName, res.ImageID, made.ImageID)
	}
	if got := reg.uploaded.Load(); got != want || res.Sent != want {
		t.Errorf("uploaded %d bytes (ds01 says %d); want the user layer %d + config %d + manifest %d = %d", got, res.Sent, user, m.Config.Size, len(rawM), want)
	}
	if res.Layers[0].Mount == "" {
		t.Errorf("the base layer was not mountable: %+v", res.Layers[0])
	}
	recs, _ := o.Records(id)
	rec, err := recs.Read(p1)
	recs.Close()
	if err != nil || len(rec.Pushed) != 1 || rec.Pushed[0].Digest != res.Digest {
		t.Errorf("record %+v, %v", rec.Pushed, err)
	}

	// Only the base is left here; the pull brings the rest.
	if _, err := o.RetireImage(ctx, id, p1, false, Events{}); err != nil {
		t.Fatal(err)
	}
	reg.fetched.Store(0)
	got, err := o.PullImage(ctx, id, ImagePull{Ref: res.Ref, Project: p2}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ImageID != made.ImageID || got.Tag != tag2 {
		t.Errorf("pulled %s as %s; want %s as %s", got.ImageID, got.Tag, made.ImageID, tag2)
	}
	if got.Held != len(m.Layers)-1 || got.Downloaded != user {
		t.Errorf("%d layers held, %d bytes downloaded; want %d held and the user layer's %d", got.Held, got.Downloaded, len(m.Layers)-1, user)
	}
	if f := reg.fetched.Load(); f != user+m.Config.Size {
		t.Errorf("the registry sent %d bytes of blobs; want the user layer %d + config %d", f, user, m.Config.Size)
	}
	run, err := d.Run(ctx, tag2, "", "id", "-u")
	if err != nil || strings.TrimSpace(run.Stdout) != "1722830498" {
		t.Errorf("id -u in the pulled image: %q %v", run.Stdout, err)
	}
	recs, _ = o.Records(id)
	rec, err = recs.Read(p2)
	recs.Close()
	if err != nil || rec.Pulled == nil || rec.ImageID != made.ImageID || rec.Base.Ref != baseRef {
		t.Errorf("record of the pulled image %+v, %v", rec, err)
	}

	// --force over the user's own image of the project: the replaced
	// image goes, as after a rebuild.
	p3 := prefix + "-changed"
	testbed.RemoveImage(t, d, "ds01-1722830498/"+p3+":latest")
	if _, err := o.CreateImage(ctx, id, ImageCreate{Project: p3, BaseRef: baseRef, Env: []string{"CHANGED=1"}}, Events{}); err != nil {
		t.Fatal(err)
	}
	res3, err := o.PushImage(ctx, id, ImagePush{Project: p3, To: to + "-changed"}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.PullImage(ctx, id, ImagePull{Ref: res3.Ref, Project: p2}, Events{}); !errors.Is(err, pipeline.ErrExists) {
		t.Errorf("pull over a different image of the project without --force: %v", err)
	}
	over, err := o.PullImage(ctx, id, ImagePull{Ref: res3.Ref, Project: p2, Force: true}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	if over.Replaced != made.ImageID || over.ImageID != res3.ImageID {
		t.Errorf("--force pull: replaced %q, now %s; want %s replaced by %s", over.Replaced, over.ImageID, made.ImageID, res3.ImageID)
	}
	if _, err := d.ImageInspect(ctx, made.ImageID); !cerrdefs.IsNotFound(err) {
		t.Errorf("the replaced image %s is still there: %v", made.ImageID, err)
	}

	other := id
	other.UID, other.GID = 1722830600, 1722830600
	_, err = o.PullImage(ctx, other, ImagePull{Ref: res.Ref, Project: p2}, Events{})
	if !errors.Is(err, record.ErrOtherUser) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("another UID's pull: %v", err)
	}
	theirs := "ds01-1722830600/" + p2 + ":latest"
	testbed.RemoveImage(t, d, theirs)
	if _, err := d.ImageInspect(ctx, theirs); err == nil {
		t.Error("the refused pull tagged an image")
	}
	// --force assembles the user layer again for the caller, on the
	// pulled image as a base.
	testbed.RemoveImage(t, d, res.Ref)
	forced, err := o.PullImage(ctx, other, ImagePull{Ref: res.Ref, Project: p2, Force: true}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	run, err = d.Run(ctx, theirs, "", "id", "-u")
	if forced.Reassembled == nil || forced.Tag != theirs || err != nil || strings.TrimSpace(run.Stdout) != "1722830600" {
		t.Errorf("--force: %+v; id -u %q %v", forced, run.Stdout, err)
	}
}

func TestPushRepo(t *testing.T) {
	for _, tc := range []struct{ to, tmpl, want, err string }{
		{"", "registry.lab:5000/ds01-{uid}/{project}", "registry.lab:5000/ds01-1000/p:latest", ""},
		{"reg.example/x/y:v2", "registry.lab:5000/ds01-{uid}/{project}", "reg.example/x/y:v2", ""},
		{"", "", "", "DS01_PUSH_REPO"},
		{"Not A Repo", "", "", "not a repository"},
	} {
		got, err := PushRepo(tc.to, tc.tmpl, 1000, "p")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q %q: %v; want an error with %q", tc.to, tc.tmpl, err, tc.err)
			}
			continue
		}
		if err != nil || got.Name() != tc.want {
			t.Errorf("%q %q: %v %v; want %s", tc.to, tc.tmpl, got, err, tc.want)
		}
	}
}

// A base only the engine holds (loaded, not pulled: no cache entry, no
// registry) is read out of the engine once into ds01's cache, and the
// registry, which lacks it, gets the image complete; a second push reads
// nothing out again and sends nothing new.
func TestPushDaemonOnlyBase(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	reg := countingRegistry(t)
	prefix := testbed.Prefix(t)
	baseTag := prefix + "/bullseye-local:1"
	testbed.RemoveImage(t, d, baseTag)
	if _, err := d.Load(ctx, testbed.Base(t, testbed.Bullseye), baseTag, nil); err != nil {
		t.Fatal(err)
	}
	o := &Ops{D: d, Version: "test", ConfigDir: t.TempDir(), CacheDir: t.TempDir()}
	id := identity.Identity{Login: "h.baker@hertie-school.lan", Name: "h-baker", UID: 1722830498, GID: 1722830498, Root: true}
	testbed.RemoveImage(t, d, "ds01-1722830498/"+prefix+":latest")
	made, err := o.CreateImage(ctx, id, ImageCreate{Project: prefix, BaseRef: baseTag}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	ev := Events{Warn: func(s string) { warned = append(warned, s) }}
	to := reg.host + "/" + prefix + "/p"
	res, err := o.PushImage(ctx, id, ImagePush{Project: prefix, To: to}, ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "read out of the engine once") {
		t.Errorf("warnings %q", warned)
	}
	pr, _ := name.ParseReference(res.Ref)
	pushed, err := remote.Image(pr)
	if err != nil {
		t.Fatal(err)
	}
	if cn, _ := pushed.ConfigName(); cn.String() != made.ImageID {
		t.Errorf("pushed config %s, local image %s", cn, made.ImageID)
	}
	// Complete: every layer is in the registry and hashes to its diff ID.
	if err := validateLayers(pushed); err != nil {
		t.Error(err)
	}
	warned = nil
	reg.uploaded.Store(0)
	again, err := o.PushImage(ctx, id, ImagePush{Project: prefix, To: to}, ev)
	if err != nil || len(warned) != 0 || again.Digest != res.Digest {
		t.Errorf("second push: %+v %v, warnings %q", again, err, warned)
	}
	if n := reg.uploaded.Load(); n > int64(len(mustRaw(t, pushed))) {
		t.Errorf("second push uploaded %d bytes", n)
	}
}

func mustRaw(t *testing.T, img interface{ RawManifest() ([]byte, error) }) []byte {
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// validateLayers reads every layer blob back from the registry: the base
// was read out of the engine as plain tars, so each blob's sha256 must be
// its diff ID (go-containerregistry's validate would take them for gzip).
func validateLayers(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	for i, d := range m.Layers {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || h != cfg.RootFS.DiffIDs[i] || n != d.Size {
			return fmt.Errorf("layer %d: sha256 %s, %d bytes (%v); want diff ID %s, %d bytes", i, h, n, err, cfg.RootFS.DiffIDs[i], d.Size)
		}
	}
	return nil
}

// An image with a shared package layer is pushed as the package layer
// (from ds01's cache), the user layer, config and manifest, the base
// mounted from its repository of the same registry.
func TestPushPackages(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	wheels := testbed.Wheels(t, d, "../../testdata/pypkgs")
	reg := countingRegistry(t)
	prefix := testbed.Prefix(t)
	baseRef := reg.host + "/" + prefix + "/bookworm:1"
	br, _ := name.ParseReference(baseRef)
	if err := remote.Write(br, testbed.Base(t, testbed.Bookworm)); err != nil {
		t.Fatal(err)
	}
	testbed.RemoveImage(t, d, baseRef)
	o := &Ops{D: d, Version: "test", ConfigDir: t.TempDir(), CacheDir: t.TempDir()}
	id := identity.Identity{Login: "h.baker@hertie-school.lan", Name: "h-baker", UID: 1722830498, GID: 1722830498, Root: true}
	tag := "ds01-1722830498/" + prefix + ":latest"
	testbed.RemoveImage(t, d, tag)
	made, err := o.CreateImage(ctx, id, ImageCreate{Project: prefix, BaseRef: baseRef,
		Packages: packages.Request{Pip: []string{"ds01-greet"}, FindLinks: wheels, NoIndex: true}}, Events{})
	if made != nil && made.Packages != nil {
		testbed.RemoveImage(t, d, made.Packages.Image)
	}
	if err != nil {
		t.Fatal(err)
	}
	reg.uploaded.Store(0)
	res, err := o.PushImage(ctx, id, ImagePush{Project: prefix, To: reg.host + "/" + prefix + "/pushed"}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := name.ParseReference(res.Ref)
	pushed, err := remote.Image(pr)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := pushed.Manifest()
	n := len(m.Layers)
	want := m.Layers[n-1].Size + m.Layers[n-2].Size + m.Config.Size + int64(len(mustRaw(t, pushed)))
	if got := reg.uploaded.Load(); got != want {
		t.Errorf("uploaded %d bytes; want package layer + user layer + config + manifest = %d", got, want)
	}
	if cn, _ := pushed.ConfigName(); cn.String() != made.ImageID {
		t.Errorf("pushed config %s, local image %s", cn, made.ImageID)
	}
	if err := validateLayers(pushed); err != nil {
		t.Error(err)
	}
}
