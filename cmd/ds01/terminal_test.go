package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/internal/testbed"
)

// A base's own output and labels carry escape sequences (a title change,
// colours): on the user's terminal, driven through tmux, they show
// escaped and the title stays as it was.
func TestHostileTextOnTerminal(t *testing.T) {
	d := testbed.Docker(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux is needed (scripts/setup installs it): %v", err)
	}
	plain := loadBase(t, d, testbed.Base(t, testbed.Bookworm), "termbase")
	dir := t.TempDir()
	// The base's python3 writes a title change and colours before it
	// does anything; its labels claim a user whose ID is an escape.
	python := "#!/bin/sh\nprintf '\\033]0;PWNED-TITLE\\007\\033[31mRED-FROM-BASE\\033[0m\\n'\nexec /usr/bin/python3 \"$@\"\n"
	os.WriteFile(filepath.Join(dir, "python3"), []byte(python), 0o755)
	df := fmt.Sprintf("FROM %s\nCOPY python3 /usr/local/bin/python3\nLABEL aime.mlc.DS01_HAS_USER_SETUP=true aime.mlc.DS01_USER_ID=\"\x1b]0;PWNED-LABEL\x07\" aime.mlc.DS01_GROUP_ID=1\n", plain)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644)
	base := testbed.Prefix(t) + "/termhostile:latest"
	testbed.RemoveImage(t, d, base)
	build := exec.Command("docker", "build", "-q", "-t", base, dir)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	c := newCLI(t)
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, "ds01-1722830498/"+project+":latest")
	cleanupPackageImages(t, d)

	var script strings.Builder
	for _, args := range [][]string{
		{"image", "create", project, "--base", base, "--pip", "no-such-package-here", "--no-index"},
		{"container", "deploy", project, "--image", base, "--workspace", t.TempDir(), "--dry-run"},
	} {
		fmt.Fprintf(&script, "DS01_CONFIG=%q DS01_CACHE=%q %q", c.config, c.cache, binary(t))
		for _, a := range append(append([]string{}, asBaker...), args...) {
			fmt.Fprintf(&script, " %q", a)
		}
		script.WriteString("\necho STEP=$?\n")
	}
	script.WriteString("echo DONE\nsleep 60\n")
	run := filepath.Join(t.TempDir(), "run.sh")
	os.WriteFile(run, []byte(script.String()), 0o755)
	session := testbed.Prefix(t)
	tmux := testbed.Tmux(t)
	if out, err := tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "60", "sh", run).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	defer tmux("kill-session", "-t", session).Run()
	title := func() string {
		out, _ := tmux("display-message", "-p", "-t", session, "#{pane_title}").Output()
		return strings.TrimSpace(string(out))
	}
	screen := func() string {
		out, _ := tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session).Output()
		return string(out)
	}
	before := title()
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(screen(), "DONE") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	s := screen()
	if !strings.Contains(s, "DONE") {
		t.Fatalf("the commands did not end:\n%s", s)
	}
	if got := title(); strings.Contains(got, "PWNED") || got != before {
		t.Errorf("the pane's title is %q, was %q: an escape from the base reached the terminal", got, before)
	}
	for _, want := range []string{`\x1b]0;PWNED-LABEL\x07`} {
		if !strings.Contains(s, want) {
			t.Errorf("the screen does not show %s escaped:\n%s", want, s)
		}
	}
	if strings.Contains(s, "PWNED-TITLE") && !strings.Contains(s, `\x1b]0;PWNED-TITLE\x07`) {
		t.Errorf("the base's title sequence reached the screen unescaped:\n%s", s)
	}
}
