package testbed

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// User is a real Unix account a test made (name ds01u-<random>), outside
// the docker group, removed with its home and any sudoers rule when the
// test ends.
type User struct {
	Login    string
	UID, GID uint32
	Home     string
}

// Homes is where a test's users live.
type Homes int

const (
	// HardenedHomes is a tmpfs mounted nosuid,nodev (its only mount), the
	// usual hardening of /home: setuid files and device nodes made there
	// by root in a container give nothing on the host.
	HardenedHomes Homes = iota
	// PlainHomes is a directory on the root filesystem, which honours
	// setuid bits.
	PlainHomes
)

// HomesDir makes a directory for test users' homes under /tmp (which the
// containerd-store engines of the test bed share with the host).
func HomesDir(t testing.TB, kind Homes) string {
	t.Helper()
	NeedRoot(t)
	dir, err := os.MkdirTemp("/tmp", "ds01test-homes-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	if kind == HardenedHomes {
		run(t, "mount", "-t", "tmpfs", "-o", "nosuid,nodev,size=256m,mode=0755", "ds01test-homes", dir)
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	}
	return dir
}

// NeedRoot skips a test that makes users when not root, and under -short.
func NeedRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that makes real Unix users")
	}
	if os.Geteuid() != 0 {
		t.Skip("making real Unix users needs root")
	}
}

// NewUser makes a user with a home under homes and the given extra
// groups (which must exist).
func NewUser(t testing.TB, homes string, groups ...string) User {
	t.Helper()
	NeedRoot(t)
	b := make([]byte, 4)
	rand.Read(b)
	login := "ds01u-" + hex.EncodeToString(b)
	home := filepath.Join(homes, login)
	args := []string{"--create-home", "--home-dir", home, "--shell", "/bin/bash", "--user-group", "--no-log-init"}
	if len(groups) > 0 {
		args = append(args, "--groups", strings.Join(groups, ","))
	}
	run(t, "useradd", append(args, login)...)
	t.Cleanup(func() {
		exec.Command("pkill", "-KILL", "-u", login).Run()
		exec.Command("userdel", "--force", "--remove", login).Run()
		os.RemoveAll(home)
	})
	u, err := user.Lookup(login)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return User{Login: login, UID: uint32(uid), GID: uint32(gid), Home: home}
}

// NewGroup makes a group (ds01g-<random>), removed when the test ends.
func NewGroup(t testing.TB) (string, uint32) {
	t.Helper()
	NeedRoot(t)
	b := make([]byte, 4)
	rand.Read(b)
	name := "ds01g-" + hex.EncodeToString(b)
	run(t, "groupadd", name)
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.ParseUint(g.Gid, 10, 32)
	return name, uint32(gid)
}

// AllowSudo gives u a sudoers rule for bin alone, with no password, as a
// site that lets users run ds01 without the docker group would.
func (u User) AllowSudo(t testing.TB, bin string) {
	t.Helper()
	rule := filepath.Join("/etc/sudoers.d", strings.ReplaceAll(u.Login, "-", "_"))
	line := fmt.Sprintf("%s ALL=(root) NOPASSWD: %s\n", u.Login, bin)
	if err := os.WriteFile(rule, []byte(line), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(rule) })
	if out, err := exec.Command("visudo", "-c", "-f", rule).CombinedOutput(); err != nil {
		t.Fatalf("sudoers rule %s: %v\n%s", rule, err, out)
	}
}

// Command is name args run with u's own credentials (its groups from the
// host), in its home, with a minimal login environment.
func (u User) Command(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Dir = u.Home
	c.Env = []string{"HOME=" + u.Home, "USER=" + u.Login, "LOGNAME=" + u.Login, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8"}
	groups := []uint32{u.GID}
	if uu, err := user.Lookup(u.Login); err == nil {
		if ids, err := uu.GroupIds(); err == nil {
			groups = groups[:0]
			for _, s := range ids {
				n, _ := strconv.ParseUint(s, 10, 32)
				groups = append(groups, uint32(n))
			}
		}
	}
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: groups}}
	return c
}

// Run runs a command as u and returns its output and error apart.
func (u User) Run(t testing.TB, env []string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	c := u.Command(name, args...)
	c.Env = append(c.Env, env...)
	var o, e bytes.Buffer
	c.Stdout, c.Stderr = &o, &e
	err = c.Run()
	return o.String(), e.String(), err
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary builds ds01 once per test process into a directory every user
// can read (and a sudoers rule can name), removed by nothing: each test
// process has its own under /tmp, cleaned by the OS.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("/tmp", "ds01test-bin-")
		if err != nil {
			binErr = err
			return
		}
		os.Chmod(dir, 0o755)
		binPath = filepath.Join(dir, "ds01")
		root, err := moduleRoot()
		if err != nil {
			binErr = err
			return
		}
		c := exec.Command("go", "build", "-o", binPath, "./cmd/ds01")
		c.Dir = root
		if out, err := c.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
