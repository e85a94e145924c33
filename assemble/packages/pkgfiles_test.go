package packages

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
)

type entry struct {
	name string
	typ  byte
	mode int64
	body string
	link string
}

func tarOf(t testing.TB, es ...entry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	return b.Bytes()
}

// memPut keeps content by digest, as the cache does.
type memPut map[string]string

func (m memPut) put(r io.Reader) (string, int64, error) {
	data, err := io.ReadAll(r)
	s := sha256.Sum256(data)
	m[hex.EncodeToString(s[:])] = string(data)
	return hex.EncodeToString(s[:]), int64(len(data)), err
}

func TestReadInstallOutput(t *testing.T) {
	for _, tc := range []struct {
		name     string
		entries  []entry
		apt, pip string
		hasApt   bool
		files    []string
		skipped  []string
		err      string
	}{
		{name: "reports and files", hasApt: true, apt: "hello=2.10-3\n", pip: "{}", files: []string{"a-1.0-py3-none-any.whl", "hello_2.10-3_amd64.deb"}, entries: []entry{
			{name: "out/", typ: tar.TypeDir, mode: 0o755},
			{name: "out/apt.txt", typ: tar.TypeReg, mode: 0o644, body: "hello=2.10-3\n"},
			{name: "out/pip.json", typ: tar.TypeReg, mode: 0o644, body: "{}"},
			{name: "out/wheels/a-1.0-py3-none-any.whl", typ: tar.TypeReg, mode: 0o4755, body: "wheel"},
			{name: "out/debs/hello_2.10-3_amd64.deb", typ: tar.TypeReg, mode: 0o644, body: "deb"},
			{name: "out/debs/partial/", typ: tar.TypeDir, mode: 0o700},
		}},
		// The base replaced ds01's outputs with links to the host's files.
		{name: "reports are links", skipped: []string{"out/apt.txt", "out/pip.json"}, entries: []entry{
			{name: "out/apt.txt", typ: tar.TypeSymlink, link: "/etc/shadow"},
			{name: "out/pip.json", typ: tar.TypeLink, link: "etc/shadow"},
		}},
		{name: "planted shell and devices", hasApt: true, skipped: []string{"out/wheels/sh", "out/wheels/x.whl", "out/debs/null.deb", "out/wheels/sub/b-1.0-py3-none-any.whl", "out/wheels/.hidden.whl"}, entries: []entry{
			{name: "out/apt.txt", typ: tar.TypeReg},
			{name: "out/wheels/sh", typ: tar.TypeReg, mode: 0o4755, body: "ELF"},
			{name: "out/wheels/x.whl", typ: tar.TypeSymlink, link: "/etc/shadow"},
			{name: "out/debs/null.deb", typ: tar.TypeChar},
			{name: "out/wheels/sub/b-1.0-py3-none-any.whl", typ: tar.TypeReg, body: "w"},
			{name: "out/wheels/.hidden.whl", typ: tar.TypeReg, body: "w"},
		}},
		{name: "report too large", err: "more than the", entries: []entry{
			{name: "out/apt.txt", typ: tar.TypeReg, body: strings.Repeat("a", maxReport+1)},
		}},
		{name: "not a tar", err: "reading the install's results", entries: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tarOf(t, tc.entries...)
			if tc.entries == nil {
				data = []byte(strings.Repeat("x", 1024))
			}
			m := memPut{}
			out, err := readInstallOutput(bytes.NewReader(data), m.put)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.HasApt != tc.hasApt || string(out.Apt) != tc.apt || string(out.Pip) != tc.pip {
				t.Errorf("reports %v %q %q, want %v %q %q", out.HasApt, out.Apt, out.Pip, tc.hasApt, tc.apt, tc.pip)
			}
			var names []string
			for _, f := range out.Files {
				names = append(names, f.Name)
				if m[f.SHA256] == "" {
					t.Errorf("%s not kept by its digest", f.Name)
				}
			}
			if strings.Join(names, " ") != strings.Join(tc.files, " ") || strings.Join(out.Skipped, " ") != strings.Join(tc.skipped, " ") {
				t.Errorf("files %v skipped %v, want %v and %v", names, out.Skipped, tc.files, tc.skipped)
			}
		})
	}
}

func FuzzReadInstallOutput(f *testing.F) {
	f.Add(tarOf(f, entry{name: "out/apt.txt", typ: tar.TypeReg, body: "a=1"}, entry{name: "out/wheels/a-1-py3-none-any.whl", typ: tar.TypeReg, body: "w"}))
	f.Add(tarOf(f, entry{name: "out/apt.txt", typ: tar.TypeSymlink, link: "/etc/shadow"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := readInstallOutput(bytes.NewReader(data), memPut{}.put)
		if err != nil {
			return
		}
		if len(out.Apt) > maxReport || len(out.Pip) > maxReport {
			t.Fatal("a report over the cap")
		}
		for _, fl := range out.Files {
			if fl.valid() != nil {
				t.Fatalf("kept %q", fl.Name)
			}
		}
	})
}

func TestFilterAptLists(t *testing.T) {
	in := tarOf(t,
		entry{name: "lists/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "lists/deb.debian.org_debian_dists_bookworm_InRelease", typ: tar.TypeReg, mode: 0o4755, body: "release"},
		entry{name: "lists/lock", typ: tar.TypeReg, body: ""},
		entry{name: "lists/partial/x", typ: tar.TypeReg, body: "half"},
		entry{name: "lists/shadow", typ: tar.TypeSymlink, link: "/etc/shadow"},
		entry{name: "lists/sda", typ: tar.TypeBlock},
	)
	var out bytes.Buffer
	if err := filterAptLists(bytes.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode&^0o777 != 0 {
			t.Errorf("%s keeps mode %o", h.Name, h.Mode)
		}
		got = append(got, h.Name)
	}
	if want := "lists/ lists/partial/ lists/deb.debian.org_debian_dists_bookworm_InRelease"; strings.Join(got, " ") != want {
		t.Errorf("kept %v, want %s", got, want)
	}
}

func FuzzFilterAptLists(f *testing.F) {
	f.Add(tarOf(f, entry{name: "lists/a_Packages", typ: tar.TypeReg, body: "p"}, entry{name: "lists/b", typ: tar.TypeSymlink, link: "/"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if filterAptLists(bytes.NewReader(data), &out) != nil {
			return
		}
		tr := tar.NewReader(&out)
		for {
			h, err := tr.Next()
			if err != nil {
				return
			}
			if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir || !strings.HasPrefix(h.Name, "lists/") || strings.Contains(h.Name[len("lists/"):], "..") {
				t.Fatalf("kept %q (type %c)", h.Name, h.Typeflag)
			}
		}
	})
}

func TestParsePins(t *testing.T) {
	for _, tc := range []struct {
		name, apt, pip string
		err            string
	}{
		{name: "good", apt: "hello=2.10-3\nlibc6=2.36-9+deb12u4\n", pip: `{"install":[{"requested":true,"metadata":{"name":"ds01-greet","version":"0.3.0"}}]}`},
		{name: "shadow line in apt", apt: "root:$y$j9T$abc:19000:0:99999:7:::\n", err: "not a package name"},
		{name: "escape in pip", pip: `{"install":[{"metadata":{"name":"x\u001b]0;pwned\u0007","version":"1"}}]}`, err: "not a package name"},
		{name: "comma in version", pip: `{"install":[{"metadata":{"name":"x","version":"1,2"}}]}`, err: "not a package name"},
		{name: "not json", pip: `root:x:0:0`, err: "pip's report"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err1 := parseAptList([]byte(tc.apt))
			var err2 error
			if tc.pip != "" {
				_, _, err2 = parsePipReport([]byte(tc.pip))
			}
			err := err1
			if err == nil {
				err = err2
			}
			if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err %v, want %q", err, tc.err)
			}
		})
	}
}
