package layers

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ds01/ds01/internal/limits"
)

// headersOnly is a layer of headers without bodies, cut after the last:
// a reader must refuse by the header, before it reads a body.
func headersOnly(t *testing.T, hs ...*tar.Header) memLayer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	return memLayer(b.Bytes())
}

func hdr(name string, typ byte, size int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Size: size, Mode: 0o644, ModTime: t0, Format: tar.FormatPAX}
}

// Hostile bases, read from their layers: each a clear error naming the
// limit, or a correct user layer.
func TestHostileBaseLayers(t *testing.T) {
	passwdOK := reg("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
	manySkel := []Entry{dir("etc"), dir("etc/skel"), passwdOK}
	for i := range limits.SkelEntries.Max + 1 {
		manySkel = append(manySkel, reg(fmt.Sprintf("etc/skel/f%05d", i), ""))
	}
	bigSkel := []Entry{dir("etc"), dir("etc/skel"), passwdOK}
	for i := range 5 {
		bigSkel = append(bigSkel, reg(fmt.Sprintf("etc/skel/big%d", i), strings.Repeat("x", 14<<20)))
	}
	chain := []Entry{dir("etc"), symlink("etc/passwd", "/l/0"), dir("l")}
	for i := range 1000 {
		chain = append(chain, symlink(fmt.Sprintf("l/%d", i), fmt.Sprintf("/l/%d", i+1)))
	}
	for _, tc := range []struct {
		name  string
		stack []Layer
		want  string
	}{
		{"2 GB /etc/passwd", []Layer{headersOnly(t, hdr("etc/", tar.TypeDir, 0), hdr("etc/passwd", tar.TypeReg, 2<<30))}, "account file size limit of 16777216 bytes (2147483648)"},
		{"5 GB file in /etc/skel", []Layer{headersOnly(t, hdr("etc/", tar.TypeDir, 0), hdr("etc/skel/", tar.TypeDir, 0), hdr("etc/skel/sparse", tar.TypeReg, 5<<30))}, "/etc/skel file size limit"},
		{"10 001 entries in /etc/skel", []Layer{layer(t, manySkel...)}, "/etc/skel entries limit of 10000"},
		{"70 MB in /etc/skel", []Layer{layer(t, bigSkel...)}, "/etc/skel size limit of 67108864"},
		{"passwd a chain of 1000 symlinks", []Layer{layer(t, chain...)}, "symbolic link"},
		{"passwd a directory", []Layer{layer(t, dir("etc"), dir("etc/passwd"))}, "/etc/passwd is not a regular file"},
		{"passwd a FIFO", []Layer{rawLayer(t, hdr("etc/", tar.TypeDir, 0), hdr("etc/passwd", tar.TypeFifo, 0))}, "/etc/passwd is not a regular file"},
		{"passwd a device", []Layer{rawLayer(t, hdr("etc/", tar.TypeDir, 0), &tar.Header{Name: "etc/passwd", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3})}, "/etc/passwd is not a regular file"},
		{"passwd a link to nothing", []Layer{layer(t, dir("etc"), symlink("etc/passwd", "/nowhere"))}, "a symbolic link that leads to no file"},
		{"passwd a hard link to nothing", []Layer{rawLayer(t, hdr("etc/", tar.TypeDir, 0), &tar.Header{Name: "etc/passwd", Typeflag: tar.TypeLink, Linkname: "etc/gone"})}, "has no root account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := Find(tc.stack, UserWant)
			if err == nil {
				_, err = UserLayer(fs, hbaker, t0)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want one saying %q", err, tc.want)
			}
			if strings.Contains(tc.want, "limit") && !errors.Is(err, limits.ErrLimit) {
				t.Errorf("%v is not a limits.Error", err)
			}
		})
	}
}

// A skeleton .bashrc that is a directory, FIFOs and device nodes in
// /etc/skel: the layer is made, with ds01's .bashrc, none of the special
// files, and the rest of the skeleton.
func TestSkelOddEntries(t *testing.T) {
	l := rawLayer(t,
		hdr("etc/", tar.TypeDir, 0),
		&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 32},
		hdr("etc/skel/", tar.TypeDir, 0),
		&tar.Header{Name: "etc/skel/.bashrc/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "etc/skel/.bashrc/inner", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		&tar.Header{Name: "etc/skel/fifo", Typeflag: tar.TypeFifo, Mode: 0o644},
		&tar.Header{Name: "etc/skel/disk", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8},
		&tar.Header{Name: "etc/skel/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		&tar.Header{Name: "etc/skel/.profile", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5},
	)
	// rawLayer fills bodies with "x": passwd needs a root line.
	fix := bytes.Replace(l, bytes.Repeat([]byte("x"), 32), []byte("root:x:0:0:root:/root:/bin/sh\n\n\n"), 1)
	fs, err := Find([]Layer{memLayer(fix)}, UserWant)
	if err != nil {
		t.Fatal(err)
	}
	res, err := UserLayer(fs, hbaker, t0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]Entry{}
	for _, e := range res.Entries {
		seen[e.Path] = e
	}
	if e := seen["home/h-baker/.bashrc"]; e.Type != tar.TypeReg || !strings.Contains(string(e.Data), ">>> ds01 >>>") {
		t.Errorf(".bashrc: %+v", e)
	}
	for _, p := range []string{"home/h-baker/.bashrc/inner", "home/h-baker/fifo", "home/h-baker/disk", "home/h-baker/null"} {
		if _, ok := seen[p]; ok {
			t.Errorf("%s is in the layer", p)
		}
	}
	if e := seen["home/h-baker/.profile"]; e.Type != tar.TypeReg || string(e.Data) != "xxxxx" {
		t.Errorf(".profile: %+v", e)
	}
	var b bytes.Buffer
	if err := Write(&b, res.Entries); err != nil {
		t.Fatalf("the layer does not write: %v", err)
	}
}
