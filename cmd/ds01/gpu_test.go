package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/testbed"
)

// fourGPUStandIn is a stand-in for nvidia-smi on a 4-GPU server, readable
// and runnable by every user; each run leaves a mark.
func fourGPUStandIn(t *testing.T) (script, marks string) {
	dir, err := os.MkdirTemp("/tmp", "ds01test-gpu-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	script, marks = filepath.Join(dir, "nvidia-smi"), filepath.Join(dir, "marks")
	var q strings.Builder
	for i := range 4 {
		fmt.Fprintf(&q, "%d, GPU-%d%d%d%d%d%d%d%d-0000-0000-0000-000000000000, NVIDIA A100-SXM4-80GB, 81920, Disabled, %d\n", i, i, i, i, i, i, i, i, i, 10*i)
	}
	body := "#!/bin/sh\necho run >>" + marks + "\ncase \"$1\" in --query-gpu=*) cat <<'EOF'\n" + q.String() + "EOF\n;; *) exit 2;; esac\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, marks
}

// gpu list on a stand-in 4-GPU server, with one container holding GPU 2
// in the real daemon, under all its names.
func TestGPUList(t *testing.T) {
	d := testbed.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script, _ := fourGPUStandIn(t)
	prefix := testbed.Prefix(t)
	tag := prefix + "/gpu:latest"
	img, _ := random.Image(64, 1)
	ref, _ := name.NewTag(tag)
	var buf bytes.Buffer
	if err := tarball.Write(ref, img, &buf); err != nil {
		t.Fatal(err)
	}
	testbed.RemoveImage(t, d, tag)
	if _, err := d.ImageLoad(ctx, &buf, client.ImageLoadWithQuiet(true)); err != nil {
		t.Fatal(err)
	}
	labels := label.Container{Login: prefix, Name: prefix, UID: 4343, GID: 4343, GPUs: "device=2", CreatedAt: time.Now()}.Encode()
	maps.Copy(labels, gpu.EncodeLabels([]gpu.Ref{{Index: "2", UUID: "GPU-22222222-0000-0000-0000-000000000000"}}))
	cname := label.ContainerName(prefix, 4343)
	c, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{Name: cname, Config: &container.Config{Image: tag, Labels: labels, Cmd: []string{"/nothing"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true}) })

	bin := testbed.Binary(t)
	status := filepath.Join(t.TempDir(), "gpu-status")
	os.Symlink(bin, status)
	for _, argv := range [][]string{{bin, "gpu", "list", "--json"}, {bin, "gpu-status", "--json"}, {status, "--json"}, {bin, "gpu", "list", "--json", "--inventory", script}} {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "DS01_GPU_INVENTORY="+script)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", argv, err)
		}
		var v struct{ GPUs []gpu.Row }
		if err := json.Unmarshal(out, &v); err != nil || len(v.GPUs) != 4 {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
		if r := v.GPUs[2]; r.State != "held" || r.Container != cname || *r.UID != 4343 || *r.Utilization != 20 || v.GPUs[1].State != "free" {
			t.Errorf("%v: GPU 2 %+v", argv, r)
		}
	}
	cmd := exec.Command(bin, "gpu", "list")
	cmd.Env = append(os.Environ(), "DS01_GPU_INVENTORY="+script)
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "held   "+prefix+" (4343)  "+cname) {
		t.Errorf("table: %v\n%s", err, out)
	}
}

// Through sudo, ds01 is root: a command the user names is never run.
func TestGPUInventoryNotThroughSudo(t *testing.T) {
	s := newSudoer(t, testbed.HomesDir(t, testbed.PlainHomes))
	script, marks := fourGPUStandIn(t)
	out, code := s.ds01("gpu", "list", "--inventory", script)
	if code != 2 || !strings.Contains(out, "not taken through sudo") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(marks); err == nil {
		t.Error("the user's inventory command ran as root")
	}
	// Without sudo (and without docker), the user's own command runs as the user.
	_, _, _ = s.Run(t, []string{"DS01_GPU_INVENTORY=" + script}, s.bin, "gpu", "list")
	if _, err := os.Stat(marks); err != nil {
		t.Error("the stand-in did not run for the user's own call")
	}
}
