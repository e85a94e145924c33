package pipeline_test

import (
	"archive/tar"
	"context"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/registry"
)

// On a real engine with the containerd image store (Debian's Docker 26,
// started by the test bed): ds01 detects the store, sends the whole image
// with the base from its cache, and the user is there inside a container.
// Docker reports the manifest digest as the image ID there, not the config
// digest.
func TestContainerdEngine(t *testing.T) {
	for _, e := range testbed.Engines {
		t.Run(e.Name, func(t *testing.T) { testContainerdEngine(t, e) })
	}
}

func testContainerdEngine(t *testing.T, e testbed.Engine) {
	d := testbed.Docker(t)
	ce := testbed.ContainerdEngine(t, d, e)
	if ce.Store != engine.Containerd {
		t.Fatalf("store %q; want containerd (driver %s)", ce.Store, ce.Driver)
	}
	ctx := context.Background()
	reg := testbed.StartRegistry(t)
	bullseye := testbed.Base(t, testbed.Bullseye)
	bl, _ := bullseye.Layers()
	// A base as a pull leaves it: gzip layers, one of them 256 MB of
	// incompressible bytes.
	gz, err := tarball.LayerFromOpener(bl[0].Uncompressed)
	if err != nil {
		t.Fatal(err)
	}
	big, err := random.Layer(256<<20, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	gzipBase, err := registry.ImageFromLayers("gzip", gz, big)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		img  v1.Image
		min  int64 // bytes the base takes to stream in once
	}{
		{"bullseye", bullseye, 100 << 20},
		{"gzip-256mb", gzipBase, 256 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := reg.Host + "/" + testbed.Prefix(t) + "/" + tc.name + ":1"
			r, _ := name.ParseReference(ref)
			if err := remote.Write(r, tc.img); err != nil {
				t.Fatal(err)
			}
			cache, err := registry.OpenCache(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			project := testbed.Prefix(t)
			res, err := ce.Images.Create(ctx, pipeline.CreateRequest{Login: "h.baker@hertie-school.lan", Account: hbaker, Project: project, BaseRef: ref,
				Cache: cache, Resolve: source.ResolveOptions{Cache: cache}})
			if err != nil {
				t.Fatal(err)
			}
			// The base goes in once, as the cache has it; the image then is a
			// delta, the engine's ID for the base being the cached manifest's.
			if (res.Load.Kind != pipeline.LoadDelta || res.Load.Store != engine.Containerd) || res.Sent >= 1<<20 || res.Resolution.Loaded < tc.min {
				t.Errorf("load path %q, sent %d, base streamed %d", res.Load, res.Sent, res.Resolution.Loaded)
			}
			again, err := ce.Images.Create(ctx, pipeline.CreateRequest{Login: "h.baker@hertie-school.lan", Account: hbaker, Project: project + "-2", BaseRef: ref,
				Cache: cache, Resolve: source.ResolveOptions{Cache: cache}})
			if err != nil {
				t.Fatal(err)
			}
			testbed.RemoveImage(t, ce, "ds01-1722830498/"+project+"-2:latest")
			if (again.Load.Kind != pipeline.LoadDelta || again.Load.Store != engine.Containerd) || again.Sent >= 1<<20 || again.Resolution.Loaded != 0 {
				t.Errorf("second create: load path %q, sent %d, base streamed %d", again.Load, again.Sent, again.Resolution.Loaded)
			}
			tag := "ds01-1722830498/" + project + ":latest"
			ins, err := ce.ImageInspect(ctx, tag)
			if err != nil {
				t.Fatal(err)
			}
			if ins.ID != res.ImageID {
				t.Errorf("ds01 reports %s, the engine %s", res.ImageID, ins.ID)
			}
			t.Logf("containerd store: image ID %s (a manifest digest there); base %s", ins.ID, ins.Config.Labels["ds01.base.id"])
			files, ok := cache.Files(res.Base.ID)
			if !ok {
				t.Fatal("base files not indexed")
			}
			testbed.AssertUserInside(t, ce, tag, files, hbaker)

			// docker save of the result carries every blob its manifest lists.
			saveWhole(t, ce, tag, res.Base.Image)

			// A wrong base descriptor in the delta's manifest (the test
			// hook): the load is caught by its check, the broken image
			// removed, and the whole image sent, with a notice.
			wrong, err := deploy.ConnectHost(ctx, ce.DaemonHost())
			if err != nil {
				t.Fatal(err)
			}
			defer wrong.Close()
			pipeline.WrongBaseDescriptor(wrong.Images)
			wtag := "ds01-1722830498/" + project + "-w:latest"
			testbed.RemoveImage(t, ce, wtag)
			w, err := wrong.Images.Create(ctx, pipeline.CreateRequest{Login: "h.baker@hertie-school.lan", Account: hbaker, Project: project + "-w", BaseRef: ref,
				Cache: cache, Resolve: source.ResolveOptions{Cache: cache}})
			if err != nil {
				t.Fatal(err)
			}
			notice := strings.Join(w.Warnings, "\n")
			if w.Load != (pipeline.LoadPath{Kind: pipeline.LoadFull, Store: engine.Containerd, Why: pipeline.FullAfterCheck}) || w.Sent < tc.min ||
				!strings.Contains(notice, "delta load did not give the image expected") || !strings.Contains(notice, "removed and the whole image sent") {
				t.Errorf("wrong descriptor: load path %q, sent %d, warnings %q", w.Load, w.Sent, w.Warnings)
			}
			t.Logf("wrong descriptor: %s; %s; %d bytes sent", w.Load, notice, w.Sent)
			if ins, err := ce.ImageInspect(ctx, wtag); err != nil || ins.ID != w.ImageID {
				t.Errorf("after the fallback %s is %s (%v), ds01 reports %s", wtag, ins.ID, err, w.ImageID)
			}
			saveWhole(t, ce, wtag, res.Base.Image)
			testbed.AssertUserInside(t, ce, wtag, files, hbaker)

			// ds01's own image as a base (flow 2's case), offline: its
			// descriptors come from its ds01.layers label, and the build is a
			// delta.
			onTag, err := ce.Images.Create(ctx, pipeline.CreateRequest{Login: "alice", Account: alice, Project: project + "-a", BaseRef: tag,
				Cache: cache, Resolve: source.ResolveOptions{Cache: cache, Offline: true}})
			if err != nil {
				t.Fatal(err)
			}
			testbed.RemoveImage(t, ce, "ds01-20000000/"+project+"-a:latest")
			if onTag.Load.Descriptors.Kind != source.DescRecord || onTag.Sent >= 1<<20 {
				t.Errorf("on ds01's own image: load path %q, sent %d", onTag.Load, onTag.Sent)
			}
			saveWhole(t, ce, "ds01-20000000/"+project+"-a:latest", onTag.Base.Image)
			// A wrong descriptor there has no whole image to fall back on:
			// the bytes are the engine's only. A clear error, nothing left.
			_, e := wrong.Images.Create(ctx, pipeline.CreateRequest{Login: "alice", Account: alice, Project: project + "-b", BaseRef: tag,
				Cache: cache, Resolve: source.ResolveOptions{Cache: cache, Offline: true}})
			if e == nil || !strings.Contains(e.Error(), "cannot send base "+tag+" whole") || !strings.Contains(e.Error(), "ds01 base pull") {
				t.Errorf("wrong descriptor on a record-described base: %v", e)
			}
			if _, err := ce.ImageInspect(ctx, "ds01-20000000/"+project+"-b:latest"); err == nil {
				t.Error("the failed build left its image")
			}

			// A base only the engine knows (committed there: its inherited
			// label names one layer too few) cannot be sent without
			// exporting it: offline and not in the cache, a clear error.
			cc, err := ce.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: tag, User: "0", Cmd: []string{"sh", "-c", "echo x >/committed"}},
				HostConfig: &container.HostConfig{NetworkMode: "none"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ce.ContainerStart(ctx, cc.ID, client.ContainerStartOptions{}); err != nil {
				t.Fatal(err)
			}
			wr := ce.ContainerWait(ctx, cc.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
			select {
			case <-wr.Result:
			case err := <-wr.Error:
				t.Fatal(err)
			}
			committed := testbed.Prefix(t) + "/committed:1"
			testbed.RemoveImage(t, ce, committed)
			_, err = ce.Engine.(*client.Client).ContainerCommit(ctx, cc.ID, client.ContainerCommitOptions{Reference: committed})
			ce.ContainerRemove(ctx, cc.ID, client.ContainerRemoveOptions{Force: true})
			if err != nil {
				t.Fatal(err)
			}
			// With containerd's socket (root), its content store has them.
			xtag := "ds01-1722830498/" + project + "-x:latest"
			testbed.RemoveImage(t, ce, xtag)
			xreq := pipeline.CreateRequest{Login: "x", Account: hbaker, Project: project + "-x", BaseRef: committed, Replace: true,
				Cache: cache, Resolve: source.ResolveOptions{Cache: cache, Offline: true}}
			onCommitted, err := ce.Images.Create(ctx, xreq)
			if err != nil {
				t.Fatal(err)
			}
			if onCommitted.Load.Descriptors.Kind != source.DescContentStore || onCommitted.Sent >= 1<<20 {
				t.Errorf("engine-only base, content store: load path %q, sent %d", onCommitted.Load, onCommitted.Sent)
			}
			// Without it, the base is read out of the engine once into the
			// cache, with a notice, and then found there by the engine's ID.
			socket := ce.ContainerdSocket
			ce.ContainerdSocket = ""
			defer func() { ce.ContainerdSocket = socket }()
			exported, err := ce.Images.Create(ctx, xreq)
			if err != nil {
				t.Fatal(err)
			}
			if exported.Load.Descriptors.Kind != source.DescExported || exported.Resolution.Exported < tc.min ||
				!strings.Contains(strings.Join(exported.Warnings, "\n"), "read out of the engine once (docker save)") || exported.Sent >= 1<<20 {
				t.Errorf("engine-only base, no socket: load path %q, exported %d, sent %d, warnings %q", exported.Load, exported.Resolution.Exported, exported.Sent, exported.Warnings)
			}
			if exported.ImageID != onCommitted.ImageID {
				t.Errorf("content store and export give different images: %s, %s", onCommitted.ImageID, exported.ImageID)
			}
			again, err = ce.Images.Create(ctx, xreq)
			if err != nil {
				t.Fatal(err)
			}
			if again.Load.Descriptors.Kind != source.DescCacheByID || again.Resolution.Exported != 0 || len(again.Warnings) != 0 {
				t.Errorf("after the export: load path %q, exported %d, warnings %q", again.Load, again.Resolution.Exported, again.Warnings)
			}
			// Without ds01's cache there is nowhere to keep it: a clear error.
			if _, e := ce.Images.Create(ctx, pipeline.CreateRequest{Login: "x", Account: hbaker, Project: project + "-y", BaseRef: committed}); e == nil || !strings.Contains(e.Error(), "needs ds01's cache") {
				t.Errorf("engine-only base, no cache: %v", e)
			}
			saveWhole(t, ce, xtag, onCommitted.Base.Image)
			testbed.AssertUserInside(t, ce, xtag, files, hbaker)
		})
	}

	// A base an administrator docker-loaded from a plain docker-archive
	// (uncompressed layers, one of 256 MB of incompressible bytes), which
	// no source describes when containerd's socket cannot be used: it is
	// read out of the engine once into ds01's cache, and the image create
	// sends under 1 MB, then and after.
	t.Run("docker-archive-256mb", func(t *testing.T) {
		plainBig, err := random.Layer(256<<20, types.DockerUncompressedLayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := registry.ImageFromLayers("archive", bl[0], plainBig)
		if err != nil {
			t.Fatal(err)
		}
		ref := testbed.Prefix(t) + "/archive:1"
		tagRef, _ := name.NewTag(ref)
		testbed.RemoveImage(t, ce, ref)
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(tarball.Write(tagRef, img, pw)) }()
		lr, err := ce.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, lr)
		lr.Close()
		socket := ce.ContainerdSocket
		ce.ContainerdSocket = ""
		defer func() { ce.ContainerdSocket = socket }()
		cache, err := registry.OpenCache(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		project := testbed.Prefix(t)
		tag := "ds01-1722830498/" + project + ":latest"
		testbed.RemoveImage(t, ce, tag)
		req := pipeline.CreateRequest{Login: "h.baker@hertie-school.lan", Account: hbaker, Project: project, BaseRef: ref, Replace: true,
			Cache: cache, Resolve: source.ResolveOptions{Cache: cache, Offline: true}}
		first, err := ce.Images.Create(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if first.Load.Descriptors.Kind != source.DescExported || first.Sent >= 1<<20 || first.Resolution.Exported < 256<<20 {
			t.Errorf("docker-loaded base: load path %q, sent %d, exported %d", first.Load, first.Sent, first.Resolution.Exported)
		}
		second, err := ce.Images.Create(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if second.Sent >= 1<<20 || second.Resolution.Exported != 0 || second.ImageID != first.ImageID {
			t.Errorf("second create: sent %d, exported %d, image %s (first %s)", second.Sent, second.Resolution.Exported, second.ImageID, first.ImageID)
		}
		t.Logf("docker-loaded 256 MB base: read out once (%d bytes), then image create sent %d and %d bytes", first.Resolution.Exported, first.Sent, second.Sent)
		saveWhole(t, ce, tag, first.Base.Image)
		files, ok := cache.Files(first.Base.ID)
		if !ok {
			t.Fatal("base files not indexed")
		}
		testbed.AssertUserInside(t, ce, tag, files, hbaker)
	})

	// A base the engine pulled itself from a registry it reaches (on the
	// machine daemon's bridge gateway), gzip layers as a registry has
	// them: ds01, with an empty cache, reads the manifest and config by
	// the digest the engine pulled, fetches no layer, and sends a delta.
	t.Run("engine-pulled", func(t *testing.T) {
		greg := testbed.StartRegistryOn(t, testbed.BridgeGateway(t, d))
		ref := greg.Host + "/" + testbed.Prefix(t) + "/pulled:1"
		r, _ := name.ParseReference(ref)
		// A multi-arch index, as CUDA framework images are: the engine's ID
		// is then the index's digest.
		idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: gzipBase,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}})
		if err := remote.WriteIndex(r, idx); err != nil {
			t.Fatal(err)
		}
		testbed.RemoveImage(t, ce, ref)
		pull, err := ce.Engine.(*client.Client).ImagePull(ctx, ref, client.ImagePullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := pull.Wait(ctx); err != nil {
			t.Fatalf("the engine pulling %s: %v", ref, err)
		}
		cache, err := registry.OpenCache(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		project := testbed.Prefix(t)
		tag := "ds01-1722830498/" + project + ":latest"
		testbed.RemoveImage(t, ce, tag)
		res, err := ce.Images.Create(ctx, pipeline.CreateRequest{Login: "h.baker@hertie-school.lan", Account: hbaker, Project: project, BaseRef: ref,
			Cache: cache, Resolve: source.ResolveOptions{Cache: cache}})
		if err != nil {
			t.Fatal(err)
		}
		if idxDigest, _ := idx.Digest(); res.Base.ID != idxDigest.String() {
			t.Errorf("base ID %s; want the index digest %s, the engine's ID", res.Base.ID, idxDigest)
		}
		if res.Load.Descriptors.Kind != source.DescRegistry || res.Sent >= 1<<20 || res.Resolution.Loaded != 0 {
			t.Errorf("engine-pulled base: load path %q, sent %d, base streamed %d", res.Load, res.Sent, res.Resolution.Loaded)
		}
		if entries, _ := cache.Entries(); len(entries) != 0 {
			t.Errorf("the base was pulled into the cache: %v", entries)
		}
		saveWhole(t, ce, tag, res.Base.Image)
		files, ok := cache.Files(res.Base.ID)
		if !ok {
			t.Fatal("base files not indexed")
		}
		testbed.AssertUserInside(t, ce, tag, files, hbaker)
	})
}

// saveWhole checks that docker save of tag writes every blob: the base's
// layers whole, the user layer, the config and the manifest.
func saveWhole(t *testing.T, d *deploy.Daemon, tag string, base v1.Image) {
	t.Helper()
	rc, err := d.ImageSave(context.Background(), []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	blobs := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Typeflag == tar.TypeReg && strings.HasPrefix(h.Name, "blobs/sha256/") {
			blobs["sha256:"+strings.TrimPrefix(h.Name, "blobs/sha256/")] = h.Size
		}
	}
	m, err := base.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want := len(m.Layers) + 1 // the base's layers and the user layer
	got := 0
	for _, l := range m.Layers {
		if blobs[l.Digest.String()] == l.Size {
			got++
		}
	}
	if len(blobs) != want+2 || got != len(m.Layers) {
		t.Errorf("docker save %s: %d blobs, %d of the base's %d layers whole; want every blob (%d layers, config, manifest)", tag, len(blobs), got, len(m.Layers), want)
	}
	t.Logf("docker save %s: %d blobs", tag, len(blobs))
}
