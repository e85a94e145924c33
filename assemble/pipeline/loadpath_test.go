package pipeline

import (
	"testing"

	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/internal/engine"
)

// The sentences the CLI prints for each load path (image create, -v and
// dry runs): typed values in, the same words out.
func TestLoadPathString(t *testing.T) {
	for _, tc := range []struct {
		p    LoadPath
		want string
	}{
		{LoadPath{Kind: LoadDelta, Store: engine.GraphDriver}, "delta: graphdriver store, base layers left out of the archive"},
		{LoadPath{Kind: LoadDelta, Store: engine.Containerd, Descriptors: source.DescriptorSource{Kind: source.DescRecord}},
			"delta: containerd image store, base layers left out, named by the descriptors the engine holds them under, from ds01's record in the image's ds01.layers label"},
		{LoadPath{Kind: LoadDelta, Store: engine.Containerd, Descriptors: source.DescriptorSource{Kind: source.DescRegistry, Detail: "r@sha256:1"}, DryRun: true},
			"dry run, nothing loaded; would load delta: containerd image store, base layers left out, named by the descriptors the engine holds them under, from its registry, by the digest the engine pulled it by (r@sha256:1)"},
		{LoadPath{Kind: LoadFull, Store: engine.Containerd, Why: FullNotHeld}, "full: containerd image store, the engine did not take the base as ds01's cache has it, so the base is sent with the image"},
		{LoadPath{Kind: LoadFull, Store: engine.Containerd, Why: FullAfterCheck}, "full: containerd image store, after a delta load failed its check"},
		{LoadPath{Kind: LoadPending, Store: engine.GraphDriver, DryRun: true, Pending: PendingStream, From: "pulled from its registry into ds01's cache"},
			"dry run, nothing loaded; the base is not in the daemon: it would be pulled from its registry into ds01's cache and streamed into the daemon once, then the user layer loaded as a delta"},
		{LoadPath{Kind: LoadPending, Store: engine.Containerd, DryRun: true, Pending: PendingExport},
			"dry run, nothing loaded; containerd image store: the engine holds the base but no source names its layer descriptors, so it would be read out of the engine once (docker save) into ds01's cache, then the user layer loaded as a delta"},
		{LoadPath{Kind: LoadPending, Store: engine.GraphDriver, DryRun: true, Pending: PendingPackages},
			"dry run, nothing installed or loaded: the packages would be installed in a throwaway container of the base (or taken from ds01's cache), then the user layer added"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v:\n got %s\nwant %s", tc.p, got, tc.want)
		}
	}
	for _, tc := range []struct {
		s    source.DescriptorSource
		want string
	}{
		{source.DescriptorSource{Kind: source.DescCacheByID}, "the manifest in ds01's cache with the engine's ID"},
		{source.DescriptorSource{Kind: source.DescContentStore, Detail: "/run/containerd.sock"}, "containerd's content store at /run/containerd.sock"},
		{source.DescriptorSource{Kind: source.DescExported, Detail: "42"}, "the engine's own manifest, read out of it once into ds01's cache (42 bytes)"},
		{source.DescriptorSource{Kind: source.DescStreamed}, "the manifest in ds01's cache, the engine holding it under that digest"},
		{source.DescriptorSource{Kind: source.DescPackageImage, Detail: "ds01-packages/k"}, "ds01's record in the image's ds01.layers label (the shared package image ds01-packages/k)"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.s, got, tc.want)
		}
	}
	if source.FromRegistry.String() != "registry" {
		t.Error("base sources name themselves")
	}
}
