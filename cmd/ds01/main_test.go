package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The CLI as a user meets it: the real binary, its output and exit code.
func TestCLI(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ds01")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The DS01 script names, through symlinks.
	for _, name := range []string{"image-create", "container-deploy"} {
		if err := os.Symlink(bin, filepath.Join(filepath.Dir(bin), name)); err != nil {
			t.Fatal(err)
		}
	}
	run := func(argv0 string, args ...string) (string, int) {
		cmd := exec.Command(filepath.Join(filepath.Dir(bin), argv0), args...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	for _, tc := range []struct {
		argv0 string
		args  []string
		code  int
		want  string
	}{
		{"ds01", []string{"username", "h.baker@hertie-school.lan"}, 0, "h-baker\n"},
		{"ds01", []string{"username", "a.very.long.username.with.many.dots@domain.edu"}, 0, "a-very-long-username-with-m-9f4c\n"},
		{"ds01", []string{"username", "@nothing"}, 1, "empty user name"},
		{"ds01", []string{"username"}, 2, "takes one LOGIN"},
		{"ds01", []string{"version"}, 0, "ds01 "},
		{"ds01", []string{"image", "create", "p"}, 2, "--base REF"},
		{"ds01", []string{"image-create", "p"}, 2, "--base REF"},
		{"image-create", []string{"p"}, 2, "--base REF"},
		{"ds01", []string{"image", "create", "--base", "x", "--framework", "pytorch", "p"}, 2, "not both"},
		{"ds01", []string{"image", "create", "--base", "x", "--pull", "--offline", "p"}, 2, "give one"},
		{"ds01", []string{"base", "pull", "--platform", "amd64", "x"}, 2, "os/arch"},
		{"container-deploy", []string{"x", "--gpus", "many"}, 2, `--gpus "many"`},
		{"ds01", []string{"container-list", "--all", "--json", "--no-such"}, 2, "flag provided but not defined"},

		{"ds01", []string{"--no-such-flag"}, 2, "flag provided but not defined"},
		{"ds01", []string{"image", "create", "--help"}, 0, "--base REF"},
	} {
		t.Run(strings.Join(append([]string{tc.argv0}, tc.args...), " "), func(t *testing.T) {
			out, code := run(tc.argv0, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.code, tc.want)
			}
		})
	}
}

// Only root may act for someone else: run the binary as an ordinary user.
func TestOverridesNeedRoot(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ds01")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--user", "someone", "--uid", "5", "demo")
	if os.Getuid() == 0 {
		// Make the binary reachable for UID 65534 and become it.
		for d := dir; d != "/"; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				os.Chmod(d, fi.Mode().Perm()|0o711)
				t.Cleanup(func() { os.Chmod(d, fi.Mode().Perm()) })
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitUsage || !strings.Contains(string(out), "are for root itself only") {
		t.Fatalf("err = %v, output:\n%s\nwant exit 2 and a root-only refusal", err, out)
	}
}
