package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01/internal/testbed"
)

// A FIFO, a device or a huge file named as --catalog, --presets or
// --requirements is refused at once, naming the rule; a file the user
// cannot read (sudo ds01 --catalog /etc/shadow) is not
// read with root's rights, and none of its content is shown.
func TestUserNamedFiles(t *testing.T) {
	bin := testbed.Binary(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(2 << 30) // sparse
	f.Close()
	flags := map[string][]string{
		"catalog":      {"--framework", "pytorch", "--catalog"},
		"presets":      {"--base", "x", "--preset", "p", "--presets"},
		"requirements": {"--base", "x", "--requirements"},
	}
	for flag, args := range flags {
		for _, tc := range []struct{ file, want string }{
			{fifo, "not a regular file"},
			{"/dev/zero", "not a regular file"},
			{huge, "limit of 1048576 bytes"},
		} {
			t.Run(flag+"/"+filepath.Base(tc.file), func(t *testing.T) {
				t0 := time.Now()
				c := exec.Command(bin, append(append([]string{"image", "create"}, args...), tc.file, "p")...)
				c.Env = append(os.Environ(), "DS01_CACHE="+t.TempDir(), "DS01_CONFIG="+t.TempDir())
				out, err := c.CombinedOutput()
				if el := time.Since(t0); el > 5*time.Second {
					t.Errorf("took %s", el)
				}
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--"+flag) || !strings.Contains(string(out), tc.want) {
					t.Errorf("err %v, output %q; want exit 2 naming --%s and %q", err, out, flag, tc.want)
				}
			})
		}
	}
	// Through sudo the file is read with the user's rights: shadow's
	// lines never reach a parse error.
	u := newSudoer(t, testbed.HomesDir(t, testbed.PlainHomes))
	out, code := u.ds01("image", "create", "--framework", "pytorch", "--catalog", "/etc/shadow", "p")
	if code != 2 || !strings.Contains(out, "permission denied") || strings.Contains(out, "root:") {
		t.Errorf("sudo ds01 --catalog /etc/shadow: exit %d\n%s", code, out)
	}
}
