package layers

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

type memLayer []byte

func (m memLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m)), nil
}

var t0 = time.Unix(1700000000, 0)

func reg(p, data string) Entry {
	return Entry{Path: p, Type: tar.TypeReg, Mode: 0o644, ModTime: t0, Data: []byte(data)}
}
func dir(p string) Entry { return Entry{Path: p, Type: tar.TypeDir, Mode: 0o755, ModTime: t0} }
func symlink(p, target string) Entry {
	return Entry{Path: p, Type: tar.TypeSymlink, Mode: 0o777, ModTime: t0, Linkname: target}
}

func layer(t testing.TB, entries ...Entry) memLayer {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, entries); err != nil {
		t.Fatal(err)
	}
	return memLayer(b.Bytes())
}

// rawLayer writes headers as given, for names Write would refuse (./ prefixes,
// whiteouts are fine either way) and hard links.
func rawLayer(t testing.TB, hs ...*tar.Header) memLayer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return memLayer(b.Bytes())
}

func TestFind(t *testing.T) {
	bottom := layer(t, dir("etc"), reg("etc/passwd", "old"), reg("etc/group", "g"), dir("etc/skel"),
		reg("etc/skel/.bashrc", "rc"), reg("etc/skel/.old", "gone"), dir("opt"), dir("opt/d"), reg("opt/d/f", "lower"),
		reg("etc/shadow", "s"), dir("usr"), dir("usr/share"), reg("usr/share/gshadow", "real gshadow"))
	top := layer(t, dir("etc"), reg("etc/passwd", "new"), reg("etc/.wh.group", ""), reg("etc/skel/.wh..old", ""),
		dir("opt/d"), reg("opt/d/.wh..wh..opq", ""), reg("opt/d/g", "upper"), symlink("etc/gshadow", "../usr/share/gshadow"),
		symlink("etc/escape", "../../../host/passwd"))
	fs, err := Find([]Layer{bottom, top}, Want{
		Files: []string{"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "opt/d/f", "opt/d/g", "etc/escape"},
		Trees: []string{"etc/skel"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"etc/passwd": "new", "etc/shadow": "s", "etc/gshadow": "real gshadow", "opt/d/g": "upper"} {
		f, _, ok, err := fs.Resolve(p)
		if err != nil || !ok || string(f.Data) != want {
			t.Errorf("%s: %v %v %+v; want %q", p, ok, err, f, want)
		}
	}
	for _, p := range []string{"etc/group", "opt/d/f"} {
		if f, ok := fs.Get(p); ok {
			t.Errorf("%s should be hidden, got %q", p, f.Data)
		}
	}
	var names []string
	for _, f := range fs.Below("etc/skel") {
		names = append(names, f.Header.Name)
	}
	if len(names) != 1 || names[0] != "etc/skel/.bashrc" {
		t.Errorf("skel = %v; want only .bashrc (.old is whited out)", names)
	}
	if _, _, _, err := fs.Resolve("etc/escape"); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("escape: err = %v; want ErrOutsideRoot", err)
	}
}

func TestFindNonDirMasksBelow(t *testing.T) {
	bottom := layer(t, dir("home"), dir("home/u"), reg("home/u/f", "x"))
	top := layer(t, reg("home", "now a file"))
	fs, err := Find([]Layer{bottom, top}, Want{Files: []string{"home/u/f"}})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := fs.Get("home/u/f"); ok {
		t.Errorf("home/u/f visible under a file /home: %q", f.Data)
	}
}

func TestFindHardLinkAndDotSlash(t *testing.T) {
	l := rawLayer(t,
		&tar.Header{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "./etc/passwd-", Typeflag: tar.TypeReg, Mode: 0o600, Size: 5},
		&tar.Header{Name: "./etc/passwd", Typeflag: tar.TypeLink, Linkname: "./etc/passwd-"},
	)
	fs, err := Find([]Layer{l}, Want{Files: []string{"etc/passwd"}})
	if err != nil {
		t.Fatal(err)
	}
	f, ok := fs.Get("etc/passwd")
	if !ok || string(f.Data) != "xxxxx" || f.Header.Mode != 0o600 || f.Header.Name != "etc/passwd" {
		t.Fatalf("hard link: %v %+v", ok, f)
	}
}

func TestFindSymlinkedParent(t *testing.T) {
	// /etc -> /private/etc, as on some hardened bases.
	l := layer(t, dir("private"), dir("private/etc"), reg("private/etc/passwd", "p"), symlink("etc", "/private/etc"))
	fs, err := Find([]Layer{l}, Want{Files: []string{"etc/passwd"}})
	if err != nil {
		t.Fatal(err)
	}
	f, resolved, ok, err := fs.Resolve("etc/passwd")
	if err != nil || !ok || string(f.Data) != "p" || resolved != "private/etc/passwd" {
		t.Fatalf("got %v %q %v %+v", ok, resolved, err, f)
	}
}

func TestFindTooLarge(t *testing.T) {
	l := rawLayer(t, &tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: MaxFileSize + 1})
	if _, err := Find([]Layer{l}, Want{Files: []string{"etc/passwd"}}); err == nil {
		t.Fatal("a 16 MiB /etc/passwd was read")
	}
	// As a header only, size does not matter: that is how lastlog is read.
	fs, err := Find([]Layer{l}, Want{Headers: []string{"etc/passwd"}})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := fs.Get("etc/passwd"); !ok || f.Header.Size != MaxFileSize+1 || f.Data != nil {
		t.Fatalf("header-only read: %v %+v", ok, f)
	}
}

func FuzzFind(f *testing.F) {
	f.Add(append([]byte(nil), layer(f, dir("etc"), reg("etc/passwd", "x"), symlink("etc/group", "passwd"))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Any stream: an error or a result, never a panic or a hang.
		fs, err := Find([]Layer{memLayer(data)}, UserWant)
		if err == nil {
			fs.Resolve("etc/passwd")
			Databases(fs)
		}
	})
}

func TestFilesTarRoundTrip(t *testing.T) {
	fs, err := Find(bullseyeLike(t), UserWant)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := fs.WriteTar(&b); err != nil {
		t.Fatal(err)
	}
	back, err := ReadFilesTar(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.byPath) != len(fs.byPath) {
		t.Fatalf("%d files back, %d written", len(back.byPath), len(fs.byPath))
	}
	for p, f := range fs.byPath {
		g, ok := back.Get(p)
		if !ok || !bytes.Equal(g.Data, f.Data) || g.Header.Size != f.Header.Size || g.Header.Mode != f.Header.Mode ||
			g.Header.Uid != f.Header.Uid || g.Header.Gid != f.Header.Gid || !g.Header.ModTime.Equal(f.Header.ModTime) || g.Header.Typeflag != f.Header.Typeflag {
			t.Errorf("%s: got %+v, want %+v", p, g, f)
		}
	}
	// The user layer made from the index is the one made from the layers.
	a, err := UserLayer(fs, hbaker, t0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := UserLayer(back, hbaker, t0)
	if err != nil {
		t.Fatal(err)
	}
	var ab, cb bytes.Buffer
	Write(&ab, a.Entries)
	Write(&cb, c.Entries)
	if !bytes.Equal(ab.Bytes(), cb.Bytes()) {
		t.Error("user layer from the files index differs")
	}
}

func FuzzReadFilesTar(f *testing.F) {
	fs, _ := Find(bullseyeLike(f), UserWant)
	var b bytes.Buffer
	fs.WriteTar(&b)
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		if fs, err := ReadFilesTar(bytes.NewReader(data)); err == nil {
			Databases(fs)
			UserLayer(fs, hbaker, t0)
		}
	})
}
