package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/registry"
)

func TestWizard(t *testing.T) {
	catalog, _ := registry.ParseCatalog("Pytorch, 2.5.1, CUDA_ADA, aimehub/pt-251\nPytorch, 2.4.0, CUDA_ADA, aimehub/pt-240\nTensorflow, 2.16.1, CUDA_ADA, aimehub/tf-2161\n")
	presets := registry.Presets{"jupyter": {"jupyterlab"}, "nlp": {"transformers"}}
	for _, tc := range []struct {
		name, input string
		image       string
		presets     []string
		pip         []string
		err         string
	}{
		{"defaults", "\n\n\n\n\n", "aimehub/pt-251", nil, nil, ""},
		{"choices", "2\n1\n1, 2\ntqdm rich\ny\n", "aimehub/tf-2161", []string{"jupyter", "nlp"}, []string{"tqdm", "rich"}, ""},
		{"a bad number asked again", "9\n1\n2\n\n\nyes\n", "aimehub/pt-240", nil, nil, ""},
		{"declined", "\n\n\n\nn\n", "", nil, nil, "nothing built"},
		{"bad preset", "\n\n7\n", "", nil, nil, "give numbers from 1 to 2"},
		{"end of input", "1\n", "", nil, nil, "end of input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			ch, err := wizard(bufio.NewReader(strings.NewReader(tc.input)), &out, "proj", catalog, presets)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v; want %q\n%s", err, tc.err, out.String())
				}
				return
			}
			if err != nil || ch.Entry.Image != tc.image || !slices.Equal(ch.Presets, tc.presets) || !slices.Equal(ch.Pip, tc.pip) {
				t.Fatalf("%+v, %v\n%s", ch, err, out.String())
			}
			if !strings.Contains(out.String(), "Summary\n  image     ds01-{UID}/proj:latest\n  base      ") {
				t.Errorf("no summary:\n%s", out.String())
			}
		})
	}
}

// The wizard on a real terminal: tmux runs ds01, keys are sent, the
// screen is read, and the image is built from the answers.
func TestWizardOnTerminal(t *testing.T) {
	d := testbed.Docker(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux is needed to drive the wizard on a terminal (scripts/setup installs it): %v", err)
	}
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "wizard-pytorch")
	c := newCLI(t)
	catalog := filepath.Join(t.TempDir(), "catalog")
	os.WriteFile(catalog, []byte("Pytorch, 9.9.9, CUDA_ADA, "+base+"\nPytorch, 0.0.1, CUDA_ADA, none/none\n"), 0o644)
	project := testbed.Prefix(t)
	tag := "ds01-1722830498/" + project + ":latest"
	testbed.RemoveImage(t, d, tag)
	session := testbed.Prefix(t)
	// A script runs ds01 on the pane's terminal and keeps the pane open
	// long enough to read how it ended.
	var cmdline strings.Builder
	fmt.Fprintf(&cmdline, "DS01_CONFIG=%q DS01_CACHE=%q %q", c.config, c.cache, binary(t))
	for _, a := range append(asBaker, "image", "create", project, "--catalog", catalog) {
		fmt.Fprintf(&cmdline, " %q", a)
	}
	script := filepath.Join(t.TempDir(), "run.sh")
	os.WriteFile(script, []byte(cmdline.String()+"\necho EXIT=$?\nsleep 60\n"), 0o755)
	tmux := testbed.Tmux(t)
	if out, err := tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", "sh", script).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	defer tmux("kill-session", "-t", session).Run()
	screen := func() string {
		out, _ := tmux("capture-pane", "-p", "-t", session).Output()
		return string(out)
	}
	waitFor := func(s string) {
		t.Helper()
		for i := 0; i < 200; i++ {
			if strings.Contains(screen(), s) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%q never appeared:\n%s", s, screen())
	}
	send := func(keys ...string) {
		tmux(append([]string{"send-keys", "-t", session}, keys...)...).Run()
	}
	waitFor("Framework [1]:")
	send("Enter")
	waitFor("Pytorch version [1]:")
	send("Enter")
	waitFor("Presets:")
	send("Enter")
	waitFor("Extra pip packages")
	send("Enter")
	waitFor("Build it? [Y/n]:")
	if !strings.Contains(screen(), "base      Pytorch 9.9.9 (CUDA_ADA): "+base) {
		t.Errorf("summary:\n%s", screen())
	}
	send("y", "Enter")
	waitFor("EXIT=")
	if s := screen(); !strings.Contains(s, "EXIT=0") || !strings.Contains(s, tag) {
		t.Fatalf("wizard build:\n%s", s)
	}
	if _, err := d.ImageInspect(context.Background(), tag); err != nil {
		t.Fatal(err)
	}
}
