package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/serve"
	"github.com/ds01/ds01/internal/testbed"
)

// Idle release through the service, on a stand-in 4-GPU server whose
// GPU 0 shows 0%: alice's container holding GPU 0 is told why on its
// terminal, stopped, and audited; GPU 0 then goes to bob; alice's start
// of the released container (container open, docker start through the
// proxy) is refused while bob holds it, and allowed once he retires.
//
// A container with a GPU device request cannot start on this machine (no
// NVIDIA runtime), and the loop stops only running containers. So alice's
// container is deployed through the service with --gpus 1 (the labels are
// ds01's own), then stood in for by a running container of the same name,
// image, user, TTY and labels, without the device request. What the loop
// reads (labels, state, the inventory) and what it does (notice, stop) are
// the real thing; what a GPU process would do is not exercised.
func TestServiceIdleRelease(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	alice, bob := testbed.NewUser(t, homes), testbed.NewUser(t, homes)
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "svcidle")
	script, _ := fourGPUStandIn(t)
	t.Setenv(lockDirEnv, t.TempDir())
	t.Setenv(serve.IdleIntervalEnv, "1s")
	n, _ := reference.ParseNormalizedNamed(base)
	s := startService(t, fmt.Sprintf("idle_release = \"4s\"\n[bases]\nrefs = [%q]\n[gpus]\ndefault = 1\ninventory = %q\n", reference.TagNameOnly(n).String(), script))

	p := testbed.Prefix(t)
	a, b := gpuUser{t, d, alice, p + "a"}, gpuUser{t, d, bob, p + "b"}
	for _, u := range []gpuUser{a, b} {
		testbed.RemoveImage(t, d, u.tag())
		removeContainer(t, d, u.project+"._."+u.uid())
		if out, code := s.through(t, u.User, "image", "create", u.project, "--base", base); code != 0 {
			t.Fatalf("%s's image: exit %d\n%s", u.Login, code, out)
		}
	}
	if out, code := s.through(t, alice, "container", "deploy", a.project, "--gpus", "1"); code != 0 {
		t.Fatalf("alice's deploy: exit %d\n%s", code, out)
	}
	ag := a.granted(a.project)
	cname := a.project + "._." + a.uid()
	standIn(t, d, cname)

	// Released within the rule's 4 s and a few samples.
	deadline := time.Now().Add(45 * time.Second)
	for {
		ins, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !ins.Container.State.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still running 45 s after it started on an idle GPU", cname)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !slices.ContainsFunc(s.auditLines(t), func(m map[string]any) bool {
		return m["action"] == serve.ActionIdleRelease && m["target"] == cname && m["rule"] == serve.RuleIdleRelease && m["decision"] == "allow"
	}) {
		t.Errorf("no audit line of the idle release of %s:\n%v", cname, s.auditLines(t))
	}
	logs, _ := exec.Command("docker", "logs", cname).CombinedOutput()
	t.Logf("the container's terminal: %s", logs)
	for _, want := range []string{"idle_release of 4s", ag[0], "ds01 container open " + a.project, "ds01 container deploy " + a.project + " --gpus N"} {
		if !strings.Contains(string(logs), want) {
			t.Errorf("the container's terminal did not show %q:\n%s", want, logs)
		}
	}

	// gpu list under the same policy shows GPU 0 free; counting until
	// retire (no policy here), alice's stopped container would hold it.
	if holders := gpuHolders(t, script); holders[ag[0]] != alice.Login+" "+cname {
		t.Errorf("gpu list without the policy shows %s held by %q, want alice's stopped container", ag[0], holders[ag[0]])
	}
	if holders := gpuHolders(t, script, "--policy", filepath.Join(s.dir, "policy.toml")); holders[ag[0]] != "" {
		t.Errorf("gpu list under the policy shows %s held by %q after its release", ag[0], holders[ag[0]])
	}

	// GPU 0 is free again: the lowest free one goes to bob.
	if out, code := s.through(t, bob, "container", "deploy", b.project, "--gpus", "1"); code != 0 {
		t.Fatalf("bob's deploy: exit %d\n%s", code, out)
	}
	if bg := b.granted(b.project); !slices.Equal(bg, ag) {
		t.Fatalf("bob got %v, want alice's released %v", bg, ag)
	}

	// alice's container may not come back with bob's GPU.
	out, code := s.through(t, alice, "container", "open", a.project)
	t.Logf("container open: %s", out)
	if code == 0 || !strings.Contains(out, gpu.RuleStart) || !strings.Contains(out, "went to "+bob.Login+"'s container "+b.project+"._."+b.uid()) {
		t.Errorf("container open of the released container while bob holds its GPU: exit %d\n%s", code, out)
	}
	if !s.audited(t, alice.UID, "refuse", gpu.RuleStart) {
		t.Error("the refused open is not audited by its rule")
	}
	out, code = s.docker(t, alice, "start", cname)
	if code == 0 || !strings.Contains(out, `rule "`+gpu.RuleStart+`"`) {
		t.Errorf("docker start through the service while bob holds its GPU: exit %d\n%s", code, out)
	}
	if ins, _ := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{}); ins.Container.State.Running {
		t.Error("a refused start started the container")
	}

	// Once bob retires, the GPU is free and the start is allowed.
	if out, code := s.through(t, bob, "container", "retire", b.project); code != 0 {
		t.Fatalf("bob's retire: exit %d\n%s", code, out)
	}
	if out, code := s.docker(t, alice, "start", cname); code != 0 {
		t.Errorf("docker start with its GPU free again: exit %d\n%s", code, out)
	}
}

// standIn replaces the created container name with a running one of the
// same image, user, TTY and labels, without the GPU device request.
func standIn(t *testing.T, d interface {
	ContainerInspect(context.Context, string, client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerRemove(context.Context, string, client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerCreate(context.Context, client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerStart(context.Context, string, client.ContainerStartOptions) (client.ContainerStartResult, error)
}, name string) {
	t.Helper()
	ctx := context.Background()
	ins, err := d.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ins.Container.Config
	if _, err := d.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	cfg := &container.Config{Image: c.Image, User: c.User, Tty: true, OpenStdin: true, Labels: c.Labels, Cmd: []string{"sleep", "infinity"}}
	res, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: &container.HostConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
}
