package layers

import (
	"archive/tar"
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// Paths named .wh.* never reach a spooled layer, where they would be
// whiteouts; everything else does.
func TestSpoolSkipsWhiteoutNames(t *testing.T) {
	s, err := NewSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		path string
		typ  byte
	}{
		{"etc/.wh.debian_version", tar.TypeDir},
		{"etc/.wh.debian_version/x", tar.TypeReg},
		{"opt/.wh..wh..opq", tar.TypeReg},
		{"home/u/keep.txt", tar.TypeReg},
		{"home/u/a.wh.b", tar.TypeReg},
	} {
		if err := s.Add(tc.path, &tar.Header{Typeflag: tc.typ, Mode: 0o644}, strings.NewReader("")); err != nil {
			t.Fatal(err)
		}
	}
	s.Whiteout("srv/.wh.gone")
	s.Whiteout("srv/old")
	var b bytes.Buffer
	if err := s.WriteTar(&b, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&b)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
	}
	if want := []string{"home/u/a.wh.b", "home/u/keep.txt", "srv/.wh.old"}; !slices.Equal(names, want) {
		t.Errorf("layer has %v; want %v", names, want)
	}
	if want := []string{"etc/.wh.debian_version", "etc/.wh.debian_version/x", "opt/.wh..wh..opq", "srv/.wh.gone"}; !slices.Equal(s.Skipped(), want) {
		t.Errorf("skipped %v; want %v", s.Skipped(), want)
	}
}
