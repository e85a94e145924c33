package ops_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/engine/fake"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/testbed"
)

// fourGPUs is a 4-GPU server as nvidia-smi prints it.
func fourGPUs(t *testing.T) gpu.Inventory {
	t.Helper()
	var q strings.Builder
	for i := range 4 {
		fmt.Fprintf(&q, "%d, GPU-%d0000000-0000-0000-0000-000000000000, NVIDIA A100-SXM4-80GB, 81920, Disabled, 0\n", i, i)
	}
	inv, err := gpu.ParseQuery([]byte(q.String()))
	if err != nil || len(inv.Grantable()) != 4 {
		t.Fatalf("%v %+v", err, inv)
	}
	return inv
}

// bed is ops on a fake engine with the inventory given and limits of 2
// GPUs a user (4 for login "big"), the GPU lock in a directory of the
// test's; workspaces go under ws.
type bed struct {
	o  *ops.Ops
	e  *fake.Engine
	ws string
}

func newBed(t *testing.T, inv gpu.Inventory) bed {
	t.Helper()
	// ds01 acting as root for a user binds only directories on nosuid,
	// nodev filesystems (the setuid rule): a tmpfs of the test bed's.
	ws := t.TempDir()
	if os.Geteuid() == 0 {
		ws = testbed.HomesDir(t, testbed.HardenedHomes)
	}
	lock := t.TempDir()
	os.Chmod(lock, 0o755)
	e := fake.New(engine.GraphDriver)
	d, err := engine.Detect(context.Background(), slowCreate{e})
	if err != nil {
		t.Fatal(err)
	}
	o := &ops.Ops{D: deploy.New(d), ConfigDir: t.TempDir(), CacheDir: t.TempDir(), GPU: &ops.GPUConfig{
		Inventory: func(context.Context) (gpu.Inventory, error) { return inv, nil },
		Limits:    gpu.Limits{Default: gpu.Limit{Max: 2}, Users: map[string]gpu.Limit{"big": {Max: 4, All: true}}},
		LockDir:   lock,
	}}
	return bed{o: o, e: e, ws: ws}
}

// slowCreate takes its time over each create, as a real daemon does, so
// that a grant not held until the create would be seen twice.
type slowCreate struct{ *fake.Engine }

func (s slowCreate) ContainerCreate(ctx context.Context, o client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	time.Sleep(30 * time.Millisecond)
	return s.Engine.ContainerCreate(ctx, o)
}

// user is an account the host does not know (its files are the test's),
// with an image of project p labelled for it.
func (b bed) user(t *testing.T, login string, uid uint32, projects ...string) identity.Identity {
	t.Helper()
	cfg, _ := empty.Image.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Cmd = []string{"bash"}
	cfg.Config.Labels = label.Image{UID: uid, GID: uid, Username: login, Login: login}.Encode()
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range projects {
		if _, err := b.e.AddImage(img, label.Tag(uid, p)); err != nil {
			t.Fatal(err)
		}
	}
	return identity.Identity{Login: login, Name: login, UID: uid, GID: uid}
}

func (b bed) deploy(ctx context.Context, id identity.Identity, name, gpus string, ev ops.Events) (*deploy.DeployResult, error) {
	ws := filepath.Join(b.ws, fmt.Sprint(id.UID), name)
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return nil, err
	}
	return b.o.DeployContainer(ctx, id, ops.ContainerDeploy{Name: name, GPUs: gpus, Workspace: ws}, ev)
}

// granted is what the container of name was given, as Docker has it:
// the device request's UUIDs, checked against its labels and
// environment.
func (b bed) granted(t *testing.T, cname string) []string {
	t.Helper()
	ins, err := b.o.D.ContainerInspect(context.Background(), cname, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ins.Container
	if len(c.HostConfig.DeviceRequests) != 1 {
		t.Fatalf("%s: device requests %+v", cname, c.HostConfig.DeviceRequests)
	}
	dr := c.HostConfig.DeviceRequests[0]
	if dr.Driver != "nvidia" || dr.Count != 0 || !slices.Equal(dr.Capabilities[0], []string{"gpu"}) {
		t.Errorf("%s: device request %+v", cname, dr)
	}
	refs, err := gpu.DecodeLabels(c.Config.Labels)
	if err != nil {
		t.Fatalf("%s: %v", cname, err)
	}
	var uuids, indices []string
	for _, r := range refs {
		uuids, indices = append(uuids, r.UUID), append(indices, r.Index)
	}
	if !slices.Equal(uuids, dr.DeviceIDs) || c.Config.Labels["aime.mlc.GPUS"] != strings.Join(indices, "+") {
		t.Errorf("%s: labels %v %v, aime.mlc.GPUS %q; device request %v", cname, uuids, indices, c.Config.Labels["aime.mlc.GPUS"], dr.DeviceIDs)
	}
	if !slices.Contains(c.Config.Env, "NVIDIA_VISIBLE_DEVICES="+strings.Join(dr.DeviceIDs, ",")) {
		t.Errorf("%s: env %v does not say what the device request grants", cname, c.Config.Env)
	}
	return dr.DeviceIDs
}

// Six deploys at once of three users, each within the limit, ask for one
// GPU each of four: four get one each, no GPU twice, and two are refused
// by the free count, naming it.
func TestConcurrentDeploysGetDisjointGPUs(t *testing.T) {
	b := newBed(t, fourGPUs(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := []identity.Identity{b.user(t, "ann", 5001, "a1", "a2"), b.user(t, "ben", 5002, "b1", "b2"), b.user(t, "cat", 5003, "c1", "c2")}
	type out struct {
		cname string
		err   error
	}
	outs := make(chan out, 6)
	var wg sync.WaitGroup
	for _, id := range ids {
		for n := 1; n <= 2; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := id.Login[:1] + fmt.Sprint(n)
				res, err := b.deploy(ctx, id, name, "1", ops.Events{})
				if err == nil {
					outs <- out{cname: res.Container}
					return
				}
				outs <- out{err: err}
			}()
		}
	}
	wg.Wait()
	close(outs)
	seen := map[string]string{}
	var refused int
	for o := range outs {
		var r *gpu.Refusal
		switch {
		case errors.As(o.err, &r) && r.Rule == gpu.RuleFree && strings.Contains(o.err.Error(), "1 asked, 0 of 4 free"):
			refused++
		case o.err != nil:
			t.Errorf("deploy: %v", o.err)
		default:
			for _, u := range b.granted(t, o.cname) {
				if other, ok := seen[u]; ok {
					t.Errorf("%s granted to %s and %s", u, other, o.cname)
				}
				seen[u] = o.cname
			}
		}
	}
	if len(seen) != 4 || refused != 2 {
		t.Errorf("%d GPUs granted (%v), %d refused; want 4 and 2", len(seen), seen, refused)
	}
}

// Refusals name the rule and what the user holds; a refused or failed
// deploy makes nothing and leaves the lock free; retiring frees the
// GPUs.
func TestDeployRefusalsAndRelease(t *testing.T) {
	b := newBed(t, fourGPUs(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ann := b.user(t, "ann", 5001, "one", "two", "three", "bad")
	ben := b.user(t, "ben", 5002, "b")
	big := b.user(t, "big", 5003, "all")
	if _, err := b.deploy(ctx, ann, "one", "device=1", ops.Events{}); err != nil {
		t.Fatal(err)
	}
	if g := b.granted(t, "one._.5001"); !slices.Equal(g, []string{"GPU-10000000-0000-0000-0000-000000000000"}) {
		t.Fatalf("device=1 granted %v", g)
	}
	for _, tc := range []struct {
		id         identity.Identity
		name, gpus string
		rule, want string
	}{
		{ann, "two", "2", gpu.RuleLimit, "user ann may hold 2 GPUs (the default limit) and holds 1 (container one._.5001: GPU-10000000-0000-0000-0000-000000000000); 2 more asked"},
		{ben, "b", "device=1", gpu.RuleDevice, "GPU 1 (GPU-10000000-0000-0000-0000-000000000000) is held by ann in container one._.5001"},
		{ben, "b", "all", gpu.RuleAll, "--gpus all is not allowed for user ben (the default limit)"},
		{ben, "b", "device=7", gpu.RuleDevice, "there is no GPU 7"},
		{big, "all", "4", gpu.RuleFree, "4 asked, 3 of 4 free"},
	} {
		_, err := b.deploy(ctx, tc.id, tc.name, tc.gpus, ops.Events{})
		var r *gpu.Refusal
		if !errors.As(err, &r) || r.Rule != tc.rule || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s --gpus %s: %v; want rule %q saying %q", tc.id.Login, tc.gpus, err, tc.rule, tc.want)
		}
		if _, err := b.o.D.ContainerInspect(ctx, label.ContainerName(tc.name, tc.id.UID), client.ContainerInspectOptions{}); err == nil {
			t.Errorf("%s --gpus %s: refused, yet the container was made", tc.id.Login, tc.gpus)
		}
	}
	// Granted, then failed before the create: the lock is free again.
	ws := filepath.Join(b.ws, "bad")
	os.MkdirAll(ws, 0o755)
	if _, err := b.o.DeployContainer(ctx, ann, ops.ContainerDeploy{Name: "bad", GPUs: "1", Workspace: ws, ShmSize: "lots"}, ops.Events{}); err == nil || !strings.Contains(err.Error(), "--shm-size") {
		t.Fatalf("a bad --shm-size: %v", err)
	}
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
	defer lcancel()
	if _, err := b.deploy(lctx, big, "all", "all", ops.Events{}); err != nil {
		t.Fatalf("after a failed deploy: %v", err)
	}
	if g := b.granted(t, "all._.5003"); len(g) != 3 || slices.Contains(g, "GPU-10000000-0000-0000-0000-000000000000") {
		t.Errorf("--gpus all granted %v; want the 3 free ones", g)
	}
	// Retiring frees: ann's GPU 1 goes to ben.
	if _, err := b.o.RetireContainer(ctx, ann, ops.ContainerRetire{Name: "one"}, ops.Events{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.deploy(ctx, ben, "b", "1", ops.Events{}); err != nil {
		t.Fatal(err)
	}
	if g := b.granted(t, "b._.5002"); !slices.Equal(g, []string{"GPU-10000000-0000-0000-0000-000000000000"}) {
		t.Errorf("after retire, ben got %v; want GPU 1", g)
	}
	cs, err := b.o.ListContainers(ctx, ben, false)
	if err != nil || len(cs) != 1 || cs[0].GPUs != "1" {
		t.Errorf("container list: %+v %v; want GPUs 1", cs, err)
	}
}

// Without GPUs: root's own deploy (and the docker group's) passes
// --gpus to Docker as given, with a warning that nothing was allocated;
// a user ds01 acts for as root is refused. A container without --gpus
// gets no GPU whatever its image says.
func TestDeployWithoutGPUs(t *testing.T) {
	b := newBed(t, gpu.Inventory{NoGPUs: "no NVIDIA stack: nvidia-smi not found"})
	ctx := context.Background()
	root := b.user(t, "rooted", 5004, "r", "plain")
	root.Root = true
	var warned []string
	res, err := b.deploy(ctx, root, "r", "device=0,2", ops.Events{Warn: func(s string) { warned = append(warned, s) }})
	if err != nil {
		t.Fatal(err)
	}
	dr := res.Create.HostConfig.DeviceRequests
	if len(dr) != 1 || !slices.Equal(dr[0].DeviceIDs, []string{"0", "2"}) || res.GPUs != nil || len(warned) != 1 || !strings.Contains(warned[0], "nothing was allocated (no NVIDIA stack") {
		t.Errorf("root's --gpus without GPUs: %+v, granted %v, warnings %q", dr, res.GPUs, warned)
	}
	if l := res.Create.Config.Labels; l[gpu.LabelUUIDs] != "-" || l[gpu.LabelIndices] != "-" {
		t.Errorf("pass-through labels claim an allocation: %v", l)
	}
	res, err = b.deploy(ctx, root, "plain", "", ops.Events{})
	if err != nil || len(res.Create.HostConfig.DeviceRequests) != 0 || !slices.Contains(res.Create.Config.Env, "NVIDIA_VISIBLE_DEVICES=void") {
		t.Errorf("without --gpus: %v %+v", err, res.Create.Config.Env)
	}
	if os.Geteuid() != 0 {
		return // acting for a user is root's
	}
	ann := b.user(t, "ann", 5001, "a")
	_, err = b.deploy(ctx, ann, "a", "1", ops.Events{})
	var r *gpu.Refusal
	if !errors.As(err, &r) || r.Rule != gpu.RuleNoGPUs || !strings.Contains(err.Error(), "deploy without --gpus") {
		t.Errorf("a user's --gpus without GPUs: %v", err)
	}
}
