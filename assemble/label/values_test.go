package label

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestEscapeLabel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"all", "all"},
		{"device=0,1", "device=0%2C1"},
		{"/home/a,b/100%", "/home/a%2Cb/100%25"},
		{"%2C", "%252C"},
		{"", ""},
	} {
		got := Escape(tc.in)
		if got != tc.want {
			t.Errorf("Escape(%q) = %q; want %q", tc.in, got, tc.want)
		}
		if back := Unescape(got); back != tc.in {
			t.Errorf("Unescape(%q) = %q; want %q", got, back, tc.in)
		}
	}
}

func TestDescriptorsHaveNoComma(t *testing.T) {
	h, _ := v1.NewHash("sha256:" + strings.Repeat("ab", 32))
	descs := []v1.Descriptor{{MediaType: types.OCILayer, Digest: h, Size: 7}, {MediaType: types.DockerLayer, Digest: h, Size: 9}}
	rec := FormatLayers(descs)
	if strings.ContainsAny(rec, ",") {
		t.Fatalf("record %q has a comma", rec)
	}
	got, err := ParseLayersRecord(rec, 2)
	if err != nil || got[0].Digest != h || got[0].MediaType != types.OCILayer || got[1].Size != 9 {
		t.Fatalf("round trip: %v %+v", err, got)
	}
}

func FuzzEscapeLabel(f *testing.F) {
	for _, s := range []string{"device=0,1", "%", "%2c,%25", "a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if strings.Contains(e, ",") {
			t.Fatalf("Escape(%q) = %q has a comma", s, e)
		}
		if back := Unescape(e); back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q", s, back)
		}
	})
}

func FuzzParseLayersRecord(f *testing.F) {
	f.Add(`[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":3}]`, 1)
	f.Add(`[]`, 0)
	f.Add("application/vnd.oci.image.layer.v1.tar;sha256:"+strings.Repeat("0", 64)+";3", 1)
	f.Add(`[{"digest":"sha256:zz","size":-1}]`, 1)
	f.Fuzz(func(t *testing.T, rec string, n int) {
		descs, err := ParseLayersRecord(rec, n)
		if err != nil {
			return
		}
		if len(descs) != n {
			t.Fatalf("%d descriptors for %d layers", len(descs), n)
		}
		for _, d := range descs {
			if d.Size <= 0 || len(d.Digest.Hex) != 64 || d.MediaType == "" {
				t.Fatalf("accepted %+v", d)
			}
		}
	})
}
