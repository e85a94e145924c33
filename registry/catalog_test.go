package registry

import (
	"strings"
	"testing"
)

func TestBuiltinCatalog(t *testing.T) {
	c := BuiltinCatalog()
	if len(c) < 5 {
		t.Fatalf("%d entries", len(c))
	}
	e, err := Pick(c, "pytorch", "2.5.1", "")
	if err != nil || e.Image != "aimehub/pytorch-2.5.1-aime-cuda12.1.1" {
		t.Fatalf("pytorch 2.5.1: %+v, %v", e, err)
	}
}

func TestPick(t *testing.T) {
	c, err := ParseCatalog("# test\n\nPytorch, 2.5.0, CUDA_ADA, img/pt-250-ada\nPytorch, 2.5.0, CUDA_AMPERE, img/pt-250-amp\nPytorch, 2.4.0, CUDA_ADA, img/pt-240\nTensorflow, 2.16.1, CUDA_ADA, img/tf\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fw, v, arch string
		want        string // image, or a part of the error
	}{
		{"PyTorch", "2.4.0", "", "img/pt-240"},
		{"pytorch", "2.5.0", "cuda_ampere", "img/pt-250-amp"},
		{"pytorch", "2.5.0", "", "choose one with --arch"},
		{"pytorch", "", "", "say which pytorch version"},
		{"pytorch", "9.9", "", "choose one of:\n  Pytorch 2.5.0 (CUDA_ADA): img/pt-250-ada"},
		{"jax", "0.4", "", "it has: pytorch, tensorflow"},
	} {
		e, err := Pick(c, tc.fw, tc.v, tc.arch)
		got := e.Image
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("Pick(%s, %s, %s) = %q; want %q", tc.fw, tc.v, tc.arch, got, tc.want)
		}
	}
}

func TestParseCatalogErrors(t *testing.T) {
	for _, bad := range []string{"Pytorch, 2.5.0, CUDA_ADA", "Pytorch, 2.5.0, , img", "Pytorch, 2.5 .0, CUDA, img"} {
		if _, err := ParseCatalog(bad); err == nil || !strings.Contains(err.Error(), "catalog line 1") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzParseCatalog(f *testing.F) {
	f.Add(builtinCatalog)
	f.Add("a, b, c, d\n#x\n\n")
	f.Fuzz(func(t *testing.T, data string) {
		c, err := ParseCatalog(data)
		if err != nil {
			return
		}
		for _, e := range c {
			if e.Framework == "" || e.Image == "" || strings.Contains(e.Image, ",") {
				t.Fatalf("bad entry %+v from %q", e, data)
			}
			if _, err := Pick(c, e.Framework, e.Version, e.Arch); err != nil && !strings.Contains(err.Error(), "choose") {
				t.Fatalf("entry %+v cannot be picked: %v", e, err)
			}
		}
	})
}
