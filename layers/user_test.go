package layers

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/passwd"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// bullseyeLike is a two-layer base with what a Debian minbase has in the
// places the user layer touches, and a later layer that changes group.
func bullseyeLike(t testing.TB) []Layer {
	base := time.Unix(1650000000, 0)
	d := func(p string, mode int64) Entry {
		return Entry{Path: p, Type: tar.TypeDir, Mode: mode, ModTime: base}
	}
	f := func(p string, mode int64, gid int, data string) Entry {
		return Entry{Path: p, Type: tar.TypeReg, Mode: mode, GID: gid, ModTime: base, Data: []byte(data)}
	}
	l1 := layer(t,
		d("etc", 0o755), d("etc/skel", 0o755), d("etc/sudoers.d", 0o750), d("home", 0o755), d("var", 0o755), d("var/log", 0o755),
		f("etc/passwd", 0o644, 0, "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
		f("etc/group", 0o644, 0, "root:x:0:\nsudo:x:27:\nvideo:x:44:\nshadow:x:42:\nutmp:x:43:\nnogroup:x:65534:\n"),
		f("etc/shadow", 0o640, 42, "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"),
		f("etc/gshadow", 0o640, 42, "root:*::\nsudo:*::\nvideo:*::\nshadow:*::\nutmp:*::\nnogroup:*::\n"),
		f("etc/skel/.bashrc", 0o644, 0, "# ~/.bashrc\ncase $- in *i*) ;; *) return;; esac\nPS1='\\u@\\h:\\w\\$ '\n"),
		f("etc/skel/.profile", 0o644, 0, "# ~/.profile\n"),
		d("etc/skel/.config", 0o700),
		f("etc/skel/.config/app", 0o600, 0, "x=1\n"),
		f("var/log/lastlog", 0o664, 43, strings.Repeat("\x00", 292)),
		f("var/log/faillog", 0o644, 0, strings.Repeat("\x00", 64)),
	)
	l2 := layer(t, d("etc", 0o755), f("etc/group", 0o644, 0, "root:x:0:\nsudo:x:27:\nvideo:x:44:\nshadow:x:42:\nutmp:x:43:\nusers:x:100:\nnogroup:x:65534:\n"))
	return []Layer{l1, l2}
}

// debianProfile is Debian's /etc/skel/.profile: it reads .bashrc, then
// puts ~/.local/bin on PATH whether or not it is there.
const debianProfile = `# ~/.profile: executed by the command interpreter for login shells.
if [ -n "$BASH_VERSION" ]; then
    if [ -f "$HOME/.bashrc" ]; then
	. "$HOME/.bashrc"
    fi
fi
if [ -d "$HOME/bin" ] ; then
    PATH="$HOME/bin:$PATH"
fi
if [ -d "$HOME/.local/bin" ] ; then
    PATH="$HOME/.local/bin:$PATH"
fi
`

var hbaker = passwd.Account{Name: "h-baker", UID: 1722830498, GID: 1722830498, Groups: []string{"sudo", "video"}}

// listing is a readable form of a layer for golden files: one line an entry
// with every header field that matters, and the text of small files.
func listing(t testing.TB, tarball []byte) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "sha256:%x %d bytes\n", sha256.Sum256(tarball), len(tarball))
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var data bytes.Buffer
		data.ReadFrom(tr)
		fmt.Fprintf(&b, "%c %04o %d:%d %s %s", h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.UTC().Format(time.RFC3339), h.Name)
		if h.Linkname != "" {
			fmt.Fprintf(&b, " -> %s", h.Linkname)
		}
		if h.Typeflag == tar.TypeReg {
			fmt.Fprintf(&b, " (%d bytes)", h.Size)
		}
		b.WriteString("\n")
		if h.Typeflag == tar.TypeReg && data.Len() > 0 {
			for _, l := range strings.SplitAfter(data.String(), "\n") {
				if l != "" {
					fmt.Fprintf(&b, "\t| %s", strings.TrimSuffix(l, "\n")+"\n")
				}
			}
		}
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("..", "testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./layers -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./layers -update rewrites it; review the diff):\n%s", name, got)
	}
}

func buildUserLayer(t *testing.T, stack []Layer, acct passwd.Account) ([]byte, UserResult) {
	t.Helper()
	fs, err := Find(stack, UserWant)
	if err != nil {
		t.Fatal(err)
	}
	res, err := UserLayer(fs, acct, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, res.Entries); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), res
}

func TestUserLayerGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stack []Layer
	}{
		{"userlayer_bullseye.golden", bullseyeLike(t)},
		{"userlayer_scratch.golden", nil},
		{"userlayer_debian_profile.golden", append(bullseyeLike(t), layer(t, Entry{Path: "etc/skel/.profile", Type: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(1650000000, 0), Data: []byte(debianProfile)}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, res := buildUserLayer(t, tc.stack, hbaker)
			again, _ := buildUserLayer(t, tc.stack, hbaker)
			if !bytes.Equal(got, again) {
				t.Fatal("two builds from the same inputs differ")
			}
			if res.PrimaryGroup != "h-baker" {
				t.Errorf("primary group %q", res.PrimaryGroup)
			}
			golden(t, tc.name, listing(t, got))
		})
	}
}

func TestUserLayerRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stack []Layer
		acct  passwd.Account
		want  string
	}{
		{"passwd symlinked out of the root", []Layer{layer(t, dir("etc"), symlink("etc/passwd", "../../../../host/etc/passwd"))}, hbaker, "outside the image root"},
		{"home is a symlink", []Layer{layer(t, dir("data"), symlink("home", "/data"))}, hbaker, "/home is not a directory"},
		{"UID 0", nil, passwd.Account{Name: "x", UID: 0, GID: 5}, "ID 0"},
		{"system GID clash", bullseyeLike(t), passwd.Account{Name: "x", UID: 5000, GID: 65534}, `system group "nogroup"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := Find(tc.stack, UserWant)
			if err != nil {
				t.Fatal(err)
			}
			_, err = UserLayer(fs, tc.acct, t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
}
