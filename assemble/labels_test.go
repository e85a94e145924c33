package assemble

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
		got := EscapeLabel(tc.in)
		if got != tc.want {
			t.Errorf("EscapeLabel(%q) = %q; want %q", tc.in, got, tc.want)
		}
		if back := UnescapeLabel(got); back != tc.in {
			t.Errorf("UnescapeLabel(%q) = %q; want %q", got, back, tc.in)
		}
	}
}

func TestDescriptorsHaveNoComma(t *testing.T) {
	h, _ := v1.NewHash("sha256:" + strings.Repeat("ab", 32))
	descs := []v1.Descriptor{{MediaType: types.OCILayer, Digest: h, Size: 7}, {MediaType: types.DockerLayer, Digest: h, Size: 9}}
	rec := formatDescriptors(descs)
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
		e := EscapeLabel(s)
		if strings.Contains(e, ",") {
			t.Fatalf("EscapeLabel(%q) = %q has a comma", s, e)
		}
		if back := UnescapeLabel(e); back != s {
			t.Fatalf("UnescapeLabel(EscapeLabel(%q)) = %q", s, back)
		}
	})
}
