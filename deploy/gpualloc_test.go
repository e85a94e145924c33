package deploy

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ds01/ds01/deploy/gpu"
)

func TestGPUsOf(t *testing.T) {
	two := gpu.EncodeLabels([]gpu.Ref{{Index: "3", UUID: "GPU-3"}, {Index: "0:1", UUID: "MIG-a"}})
	for _, tc := range []struct {
		labels map[string]string
		given  string
		want   string
	}{
		{two, "2", "3+0:1"},
		{gpu.EncodeLabels(nil), "device=0,1", "device=0,1"}, // passed to Docker unallocated
		{nil, "", "-"}, // made before ds01 allocated
		{map[string]string{gpu.LabelUUIDs: "GPU-3"}, "1", "1"}, // half a record is none
	} {
		if got := gpusOf(tc.labels, tc.given); got != tc.want {
			t.Errorf("gpusOf(%v, %q) = %q; want %q", tc.labels, tc.given, got, tc.want)
		}
	}
}

// A saved image never carries an allocation, and one without any is
// left as it is.
func TestWithoutAllocation(t *testing.T) {
	if !strings.HasPrefix(gpu.LabelUUIDs, gpuLabels) || !strings.HasPrefix(gpu.LabelIndices, gpuLabels) {
		t.Fatalf("%q does not prefix the allocation labels", gpuLabels)
	}
	img, _ := random.Image(16, 1)
	cfg := v1.Config{Labels: map[string]string{"keep": "me", gpu.LabelUUIDs: "GPU-1", gpu.LabelIndices: "1"}}
	img, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := withoutAllocation(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := out.ConfigFile()
	if l := got.Config.Labels; len(l) != 1 || l["keep"] != "me" {
		t.Errorf("saved labels %v", l)
	}
	if cfg.Labels[gpu.LabelUUIDs] != "GPU-1" {
		t.Error("the caller's config was changed")
	}
	same, _ := withoutAllocation(out, got.Config)
	if same != out {
		t.Error("an image without an allocation was rewritten")
	}
}

func TestGPUOptions(t *testing.T) {
	al := &gpu.Allocation{Devices: []gpu.Device{{Index: "1", UUID: "GPU-1"}, {Index: "2:0", UUID: "MIG-x"}}}
	dr, env, err := gpuOptions("2", al)
	if err != nil || len(dr) != 1 || strings.Join(dr[0].DeviceIDs, " ") != "GPU-1 MIG-x" || dr[0].Count != 0 || strings.Join(env, " ") != "NVIDIA_VISIBLE_DEVICES=GPU-1,MIG-x" {
		t.Errorf("granted: %+v %v %v", dr, env, err)
	}
	if got := gpusLabel("2", al); got != "1+2:0" {
		t.Errorf("aime.mlc.GPUS %q", got)
	}
	if dr, env, _ := gpuOptions("", nil); dr != nil || strings.Join(env, " ") != "NVIDIA_VISIBLE_DEVICES=void" {
		t.Errorf("none: %+v %v", dr, env)
	}
	if dr, env, _ := gpuOptions("all", nil); len(dr) != 1 || dr[0].Count != -1 || env != nil {
		t.Errorf("unallocated all: %+v %v", dr, env)
	}
	if _, _, err := gpuOptions("device=", nil); err == nil {
		t.Error("device= taken")
	}
}
