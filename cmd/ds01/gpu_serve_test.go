package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/testbed"
)

// GPUs through the service on a stand-in 4-GPU server: two users deploy
// at once and get disjoint GPUs by UUID; a request beyond a user's limit,
// or beyond what is free, is refused by its rule with what the user
// holds; gpu list shows the holders; a service started afresh rebuilds
// the same allocation from the labels alone; retiring frees the GPUs; a
// user's GPU variables are refused.
func TestServiceGPUs(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	group, _ := testbed.NewGroup(t)
	alice, bob := testbed.NewUser(t, homes), testbed.NewUser(t, homes, group)
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "svcgpu")
	script, _ := fourGPUStandIn(t)
	lockDir := t.TempDir() // root's and 0700: what gpu.Lock asks of it
	t.Setenv(lockDirEnv, lockDir)
	n, _ := reference.ParseNormalizedNamed(base)
	policy := fmt.Sprintf("[bases]\nrefs = [%q]\n[gpus]\ndefault = 2\ninventory = %q\n[gpus.groups]\n%q = 3\n", reference.TagNameOnly(n).String(), script, group)
	s := startService(t, policy)

	p := testbed.Prefix(t)
	a, b := gpuUser{t, d, alice, p + "a"}, gpuUser{t, d, bob, p + "b"}
	for _, u := range []gpuUser{a, b} {
		testbed.RemoveImage(t, d, u.tag())
		for _, c := range []string{u.project, u.project + "2"} {
			removeContainer(t, d, c+"._."+u.uid())
		}
		if out, code := s.through(t, u.User, "image", "create", u.project, "--base", base); code != 0 {
			t.Fatalf("%s's image: exit %d\n%s", u.Login, code, out)
		}
	}

	// At once, two of each: all four GPUs, none twice.
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	for i, u := range []gpuUser{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], codes[i] = s.through(t, u.User, "container", "deploy", u.project, "--gpus", "2")
		}()
	}
	wg.Wait()
	for i := range outs {
		if codes[i] != 0 || !strings.Contains(outs[i], "GPUs ") {
			t.Fatalf("concurrent deploy %d: exit %d\n%s", i, codes[i], outs[i])
		}
	}
	ag, bg := a.granted(a.project), b.granted(b.project)
	if len(ag) != 2 || len(bg) != 2 || slices.ContainsFunc(ag, func(u string) bool { return slices.Contains(bg, u) }) {
		t.Fatalf("alice got %v, bob got %v: not two each, disjoint", ag, bg)
	}

	refusals := func(s *service, when string) {
		t.Helper()
		// alice at her limit (the default, 2); bob within his group's (3),
		// but nothing is free.
		out, code := s.through(t, alice, "container", "deploy", a.project+"2", "--image", a.tag(), "--gpus", "1")
		want := fmt.Sprintf("user %s may hold 2 GPUs (the default limit) and holds 2 (container %s._.%s: %s); 1 more asked", alice.Login, a.project, a.uid(), strings.Join(ag, "+"))
		if code != 1 || !strings.Contains(out, gpu.RuleLimit) || !strings.Contains(out, want) {
			t.Errorf("%s: alice over her limit: exit %d, want %q:\n%s", when, code, want, out)
		}
		out, code = s.through(t, bob, "container", "deploy", b.project+"2", "--image", b.tag(), "--gpus", "1")
		want = fmt.Sprintf("1 asked, 0 of 4 free (ds01 gpu list shows who holds the rest); ask for fewer or try again later; user %s holds 2 (container %s._.%s: %s)", bob.Login, b.project, b.uid(), strings.Join(bg, "+"))
		if code != 1 || !strings.Contains(out, gpu.RuleFree) || !strings.Contains(out, want) {
			t.Errorf("%s: bob beyond the free GPUs: exit %d, want %q:\n%s", when, code, want, out)
		}
		for _, u := range []gpuUser{a, b} {
			if _, err := d.ContainerInspect(ctx, u.project+"2._."+u.uid(), client.ContainerInspectOptions{}); err == nil {
				t.Errorf("%s: a refused deploy of %s made its container", when, u.Login)
			}
		}
		if !s.audited(t, alice.UID, "refuse", gpu.RuleLimit) || !s.audited(t, bob.UID, "refuse", gpu.RuleFree) {
			t.Errorf("%s: the refusals are not in the audit log by their rules", when)
		}
		holders := gpuHolders(t, script)
		for _, u := range ag {
			if holders[u] != alice.Login+" "+a.project+"._."+a.uid() {
				t.Errorf("%s: gpu list has %s held by %q, want alice's", when, u, holders[u])
			}
		}
		for _, u := range bg {
			if holders[u] != bob.Login+" "+b.project+"._."+b.uid() {
				t.Errorf("%s: gpu list has %s held by %q, want bob's", when, u, holders[u])
			}
		}
	}
	refusals(s, "first service")
	if out, code := s.through(t, alice, "container", "list"); code != 0 || !strings.Contains(out, a.indices(a.project)) {
		t.Errorf("container list does not show alice's GPUs %s:\n%s", a.indices(a.project), out)
	}

	// A fresh service knows nothing but the labels.
	s.stop()
	s.start(t)
	refusals(s, "restarted service")

	// Retiring frees bob's two, which are then the only free ones.
	if out, code := s.through(t, bob, "container", "retire", b.project); code != 0 {
		t.Fatalf("retire: exit %d\n%s", code, out)
	}
	if out, code := s.through(t, bob, "container", "deploy", b.project+"2", "--image", b.tag(), "--gpus", "2"); code != 0 {
		t.Fatalf("bob after retiring: exit %d\n%s", code, out)
	}
	if got := b.granted(b.project + "2"); !slices.Equal(got, bg) {
		t.Errorf("after retiring, bob got %v; want the freed %v", got, bg)
	}

	// GPU variables never come from the user.
	for _, v := range []string{"NVIDIA_VISIBLE_DEVICES=all", "CUDA_VISIBLE_DEVICES=3"} {
		if out, code := s.through(t, alice, "image", "create", p+"env", "--base", base, "--env", v); code != 1 || !strings.Contains(out, `rule "gpu-env"`) {
			t.Errorf("--env %s: exit %d\n%s", v, code, out)
		}
	}
	if !s.audited(t, alice.UID, "refuse", "gpu-env") {
		t.Error("the GPU variables' refusal is not audited")
	}
}

// gpuUser is a test user with a project of theirs.
type gpuUser struct {
	t *testing.T
	d *deploy.Daemon
	testbed.User
	project string
}

func (u gpuUser) uid() string { return strconv.FormatUint(uint64(u.UID), 10) }
func (u gpuUser) tag() string { return "ds01-" + u.uid() + "/" + u.project + ":latest" }

// granted is the UUIDs the container of project was granted, as Docker
// has them: its device request, which its labels, its environment and
// AIME's label (as mlc list reads it) agree with.
func (u gpuUser) granted(project string) []string {
	u.t.Helper()
	cname := project + "._." + u.uid()
	ins, err := u.d.ContainerInspect(context.Background(), cname, client.ContainerInspectOptions{})
	if err != nil {
		u.t.Fatal(err)
	}
	c := ins.Container
	drs := c.HostConfig.DeviceRequests
	if len(drs) != 1 || drs[0].Driver != "nvidia" || drs[0].Count != 0 || len(drs[0].Capabilities) != 1 || !slices.Equal(drs[0].Capabilities[0], []string{"gpu"}) {
		u.t.Fatalf("%s: device requests %+v", cname, drs)
	}
	ids := drs[0].DeviceIDs
	if l := c.Config.Labels; l[gpu.LabelUUIDs] != strings.Join(ids, "+") || l["aime.mlc.GPUS"] != l[gpu.LabelIndices] {
		u.t.Errorf("%s: labels %s=%q %s=%q aime.mlc.GPUS=%q; device request %v", cname, gpu.LabelUUIDs, l[gpu.LabelUUIDs], gpu.LabelIndices, l[gpu.LabelIndices], l["aime.mlc.GPUS"], ids)
	}
	if !slices.Contains(c.Config.Env, "NVIDIA_VISIBLE_DEVICES="+strings.Join(ids, ",")) {
		u.t.Errorf("%s: environment %v does not say what the device request grants", cname, c.Config.Env)
	}
	ps, err := exec.Command("docker", "ps", "-a", "--filter", "name=^"+cname+"$", "--format", "{{.Labels}}").Output()
	if err != nil {
		u.t.Fatal(err)
	}
	if m, err := mlcLabels(strings.TrimSpace(string(ps))); err != nil || m["aime.mlc.GPUS"] != c.Config.Labels[gpu.LabelIndices] {
		u.t.Errorf("%s: mlc list reads GPUS %q (%v)", cname, m["aime.mlc.GPUS"], err)
	}
	return ids
}

// indices is what container list shows for the container of project.
func (u gpuUser) indices(project string) string {
	ins, err := u.d.ContainerInspect(context.Background(), project+"._."+u.uid(), client.ContainerInspectOptions{})
	if err != nil {
		u.t.Fatal(err)
	}
	return ins.Container.Config.Labels[gpu.LabelIndices]
}

// gpuHolders is gpu list as root sees it with the stand-in inventory
// (and flags, such as --policy): "login container" by UUID.
func gpuHolders(t *testing.T, script string, flags ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(testbed.Binary(t), append([]string{"gpu", "list", "--json"}, flags...)...)
	cmd.Env = append(os.Environ(), "DS01_GPU_INVENTORY="+script)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gpu list: %v", err)
	}
	var v struct{ GPUs []gpu.Row }
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("gpu list: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, r := range v.GPUs {
		if r.State == gpu.StateHeld {
			m[r.UUID] = r.Login + " " + r.Container
		}
	}
	return m
}
