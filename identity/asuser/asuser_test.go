package asuser_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/internal/testbed"
)

func owner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// setup is a real user with a home, and a root-only directory holding a
// root file the user must not reach.
func setup(t *testing.T) (testbed.User, asuser.Cred, string) {
	homes := testbed.HomesDir(t, testbed.PlainHomes)
	u := testbed.NewUser(t, homes)
	secret := t.TempDir()
	os.Chmod(filepath.Dir(secret), 0o755) // the user may reach it, not enter it
	os.Chmod(secret, 0o700)
	if err := os.WriteFile(filepath.Join(secret, "key"), []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return u, asuser.Cred{UID: u.UID, GID: u.GID}, secret
}

func TestWriteAsUser(t *testing.T) {
	u, c, secret := setup(t)
	home, err := asuser.OpenDir(c, u.Home)
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	if err := home.WriteFile(".ds01-config/images/p.json", []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".ds01-config", ".ds01-config/images", ".ds01-config/images/p.json"} {
		if uid, gid := owner(t, filepath.Join(u.Home, p)); uid != u.UID || gid != u.GID {
			t.Errorf("%s owned by %d:%d, want the user's %d:%d", p, uid, gid, u.UID, u.GID)
		}
	}

	// The user points the records directory at root's.
	os.RemoveAll(filepath.Join(u.Home, ".ds01-config"))
	os.Mkdir(filepath.Join(u.Home, ".ds01-config"), 0o755)
	os.Lchown(filepath.Join(u.Home, ".ds01-config"), int(u.UID), int(u.GID))
	link := filepath.Join(u.Home, ".ds01-config", "images")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	err = home.WriteFile(".ds01-config/images/key.json", []byte("{}\n"), 0o644)
	if !errors.Is(err, asuser.ErrLink) {
		t.Errorf("write through a link to root's directory: %v, want ErrLink", err)
	}
	if err := home.Remove(".ds01-config/images/key"); !errors.Is(err, asuser.ErrLink) {
		t.Errorf("remove through a link: %v, want ErrLink", err)
	}
	if _, err := os.Stat(filepath.Join(secret, "key")); err != nil {
		t.Errorf("root's file: %v", err)
	}
	if uid, _ := owner(t, filepath.Join(secret, "key")); uid != 0 {
		t.Errorf("root's file now owned by %d", uid)
	}
	if _, err := home.ReadFile(".ds01-config/images/key", 1<<20); !errors.Is(err, asuser.ErrLink) {
		t.Errorf("read through a link: %v, want ErrLink", err)
	}

	// Even without a link, the kernel refuses what the user cannot do.
	root, err := asuser.OpenDir(c, filepath.Dir(secret))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	err = root.WriteFile(filepath.Join(filepath.Base(secret), "planted"), []byte("x"), 0o644)
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("writing into root's 0700 directory as the user: %v, want permission denied", err)
	}
}

func TestReadFileRules(t *testing.T) {
	u, c, secret := setup(t)
	fifo := filepath.Join(u.Home, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Lchown(fifo, int(u.UID), int(u.GID))
	big := filepath.Join(u.Home, "big")
	os.WriteFile(big, make([]byte, 2048), 0o644)
	ok := filepath.Join(u.Home, "ok")
	os.WriteFile(ok, []byte("fine\n"), 0o644)
	link := filepath.Join(u.Home, "shadow")
	os.Symlink(filepath.Join(secret, "key"), link)
	for _, tc := range []struct {
		path string
		want error
	}{
		{fifo, asuser.ErrNotRegular},
		{big, asuser.ErrTooLarge},
		{link, os.ErrPermission},
		{filepath.Join(secret, "key"), os.ErrPermission},
		{ok, nil},
	} {
		data, err := asuser.ReadFile(c, tc.path, 1024)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.path, err, tc.want)
		}
		if tc.want == nil && string(data) != "fine\n" {
			t.Errorf("%s: read %q", tc.path, data)
		}
	}
	// /proc/self/fd/N is a file this root process holds open: a magic
	// link, never followed for the user.
	held, err := os.Open(filepath.Join(secret, "key"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := asuser.ReadFile(c, fmt.Sprintf("/proc/self/fd/%d", held.Fd()), 1024); !errors.Is(err, asuser.ErrLink) {
		t.Errorf("/proc/self/fd of a root-only file: %v, want ErrLink", err)
	}
	// Root's own identity is back on every thread afterwards.
	if _, err := os.ReadFile(filepath.Join(secret, "key")); err != nil {
		t.Errorf("root after the user's reads: %v", err)
	}
}

func TestUserDir(t *testing.T) {
	u, c, secret := setup(t)
	if _, err := asuser.UserDir(c, secret, asuser.Read); !errors.Is(err, os.ErrPermission) {
		t.Errorf("root's 0700 directory: %v, want permission denied", err)
	}
	if _, err := asuser.UserDir(c, "/etc", asuser.ReadWrite); !errors.Is(err, os.ErrPermission) {
		t.Errorf("/etc read-write: %v, want permission denied", err)
	}
	link := filepath.Join(u.Home, "etc")
	os.Symlink("/etc", link)
	if real, err := asuser.UserDir(c, link, asuser.Read); err != nil || real != "/etc" {
		t.Errorf("a link to /etc read-only: %q, %v; want /etc (readable by anyone)", real, err)
	}
	if real, err := asuser.UserDir(c, u.Home, asuser.ReadWrite); err != nil || real != u.Home {
		t.Errorf("own home: %q, %v", real, err)
	}
	// /proc/PID/root leads into the mount namespace of that process (a
	// user's own, where anything can be mounted over anything): a magic
	// link, never followed.
	if _, err := asuser.UserDir(c, "/proc/self/root"+u.Home, asuser.Read); !errors.Is(err, asuser.ErrLink) {
		t.Errorf("a path through /proc/self/root: %v, want ErrLink", err)
	}
}

func TestLock(t *testing.T) {
	u, c, _ := setup(t)
	home, err := asuser.OpenDir(c, u.Home)
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	unlock, err := home.Lock(".ds01-config/images/.lock-p")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan bool)
	go func() {
		u2, err := home.Lock(".ds01-config/images/.lock-p")
		if err == nil {
			u2()
		}
		got <- err == nil
	}()
	select {
	case <-got:
		t.Fatal("a second holder got the lock while the first held it")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	if ok := <-got; !ok {
		t.Error("the second holder did not get the lock after it was released")
	}
	if uid, _ := owner(t, filepath.Join(u.Home, ".ds01-config/images/.lock-p")); uid != u.UID {
		t.Errorf("lock file owned by %d, want the user", uid)
	}
}
