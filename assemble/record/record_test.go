package record

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ds01/ds01/assemble/packages"
)

func goodRecord() Record {
	r := Record{Project: "p", Image: "ds01-1000/p:latest", Login: "u", Name: "u", UID: 1000, GID: 1000}
	r.Base.Ref = "debian:bookworm"
	return r
}

func TestRecordCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Record)
		want string
	}{
		{"as written", func(*Record) {}, ""},
		{"pushed", func(r *Record) {
			r.Pushed = []Pushed{{Repo: "registry.lab:5000/ds01-1000/p", Digest: "sha256:" + strings.Repeat("0f", 32)}}
		}, ""},
		{"pushed to no repository", func(r *Record) { r.Pushed = []Pushed{{Repo: "Bad Repo", Digest: "sha256:" + strings.Repeat("0f", 32)}} }, "registry repository"},
		{"pulled by no digest", func(r *Record) { r.Pulled = &Pushed{Repo: "registry.lab/x", Digest: "latest"} }, "not a manifest digest"},
		{"another user's", func(r *Record) { r.UID = 1001 }, "another user"},
		{"another project's image", func(r *Record) { r.Image = "ds01-1001/p:latest" }, "is not the project's"},
		{"bad project", func(r *Record) { r.Project = "../x" }, "not a valid image name"},
		{"bad base", func(r *Record) { r.Base.Ref = "UPPER CASE" }, "base"},
		{"pip option", func(r *Record) { r.Packages = &packages.Request{Pip: []string{"--index-url=http://x"}} }, "not a requirement specifier"},
		{"constraint option", func(r *Record) { r.Packages = &packages.Request{Constraints: []string{"-e /root"}} }, "not a requirement specifier"},
		{"installed option", func(r *Record) { r.Installed = &packages.Layer{Pip: []string{"-r /etc/shadow"}} }, "not a requirement specifier"},
		{"apt option", func(r *Record) { r.Packages = &packages.Request{Apt: []string{"-o=Dir::Etc=/root"}} }, "not a Debian package name"},
		{"relative wheels", func(r *Record) { r.Packages = &packages.Request{FindLinks: "wheels"} }, "not an absolute path"},
		{"env", func(r *Record) { r.Env = []string{"NOEQUALS"} }, "KEY=VALUE"},
		{"preset", func(r *Record) { r.Presets = []string{"../../x"} }, "not a preset name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := goodRecord()
			tc.edit(&r)
			err := r.Check(1000, 1000)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	r := goodRecord()
	r.GID = 5
	if err := r.Check(1000, 1000); !errors.Is(err, ErrOtherUser) {
		t.Errorf("other GID: %v", err)
	}
}

func TestDecodeRecordStrict(t *testing.T) {
	data, _ := json.Marshal(goodRecord())
	if _, err := DecodeRecord(data); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"project":"p","extra":1}`, `{"project":"p"} {}`, `[]`, ``} {
		if _, err := DecodeRecord([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	data, _ := json.Marshal(goodRecord())
	f.Add(data)
	f.Add([]byte(`{"project":"p","packages":{"pip":["a==1"],"find_links":"/w"},"installed":{"pip":["b==2"]}}`))
	pushed := goodRecord()
	pushed.Pushed = []Pushed{{Repo: "registry.lab:5000/ds01-1000/p", Digest: "sha256:" + strings.Repeat("ab", 32)}}
	data, _ = json.Marshal(pushed)
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRecord(data)
		if err != nil {
			return
		}
		if r.Check(1000, 1000) != nil {
			return
		}
		// A record that passes asks for nothing a user could not type.
		if r.Packages != nil {
			for _, s := range append(r.Packages.Pip, r.Packages.Constraints...) {
				if strings.HasPrefix(strings.TrimSpace(s), "-") || strings.ContainsAny(s, "\n\r") {
					t.Fatalf("option %q passed", s)
				}
			}
		}
		if r.UID != 1000 || r.GID != 1000 {
			t.Fatalf("record of %d:%d passed for 1000:1000", r.UID, r.GID)
		}
		for _, p := range r.Pushed {
			if strings.ContainsAny(p.Repo+p.Digest, " \n\r") {
				t.Fatalf("pushed entry %q passed", p)
			}
		}
	})
}

func TestCheckOwnImage(t *testing.T) {
	pkg := map[string]string{"ds01.packages.key": "abc"}
	mine := map[string]string{"aime.mlc.DS01_HAS_USER_SETUP": "true", "aime.mlc.DS01_USER_ID": "1000", "ds01.packages.key": "abc"}
	theirs := map[string]string{"aime.mlc.DS01_HAS_USER_SETUP": "true", "aime.mlc.DS01_USER_ID": "1001"}
	for _, tc := range []struct {
		ref    string
		labels map[string]string
		want   error
	}{
		{"debian:bookworm", nil, nil},
		{"ds01-1000/p:latest", mine, nil},
		{"ds01-1001/p:latest", nil, ErrNotYourImage},
		{"docker.io/ds01-1001/p:latest", nil, ErrNotYourImage},
		{"sha256:0123", theirs, ErrNotYourImage},
		{"ds01-packages/abc:latest", nil, ErrPackageImage},
		{"sha256:4567", pkg, ErrPackageImage},
	} {
		if err := CheckOwnImage(tc.ref, tc.labels, 1000); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.ref, err, tc.want)
		}
	}
}
