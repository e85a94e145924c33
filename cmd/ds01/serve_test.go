package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/deploy/binds"
	"github.com/ds01/ds01/internal/testbed"
)

// service is ds01 serve, run as root by the test on a socket of its own,
// with a policy and an audit log of its own.
type service struct {
	sock, audit string
	dir         string
	stop        func()
}

func startService(t *testing.T, policy string) *service {
	t.Helper()
	testbed.NeedRoot(t)
	dir, err := os.MkdirTemp("/tmp", "ds01test-serve-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &service{sock: filepath.Join(dir, "ds01.sock"), audit: filepath.Join(dir, "audit.log"), dir: dir}
	pol := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(pol, []byte(fmt.Sprintf("audit_log = %q\n%s", s.audit, policy)), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	return s
}

// start runs the service on s's socket, policy and cache; it stops when
// the test ends or at s.stop.
func (s *service) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(testbed.Binary(t), "serve", "--socket", s.sock, "--policy", filepath.Join(s.dir, "policy.toml"))
	cmd.Env = append(os.Environ(), "DS01_CACHE="+filepath.Join(s.dir, "cache"))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.stop = func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }
	t.Cleanup(s.stop)
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case first <- sc.Text():
			default:
			}
			t.Log("serve:", sc.Text())
		}
	}()
	select {
	case line := <-first:
		if !strings.Contains(line, "listening on "+s.sock) {
			t.Fatalf("ds01 serve said %q", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ds01 serve did not start")
	}
}

// serviceOn is the machine's daemon, a bullseye base loaded as name, and
// a service whose policy lets users build on it.
func serviceOn(t *testing.T, name string, policy ...string) (*deploy.Daemon, string, *service) {
	t.Helper()
	d := testbed.Docker(t)
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), name)
	n, err := reference.ParseNormalizedNamed(base)
	if err != nil {
		t.Fatal(err)
	}
	return d, base, startService(t, fmt.Sprintf("[bases]\nrefs = [%q]\n%s", reference.TagNameOnly(n).String(), strings.Join(policy, "\n")))
}

// through runs ds01 as u through the service: output and exit code.
func (s *service) through(t *testing.T, u testbed.User, args ...string) (string, int) {
	t.Helper()
	out, errOut, err := u.Run(t, []string{"DS01_HOST=unix://" + s.sock}, testbed.Binary(t), args...)
	return out + errOut, exitOf(t, err)
}

// docker runs the docker CLI as u on the service's socket.
func (s *service) docker(t *testing.T, u testbed.User, args ...string) (string, int) {
	t.Helper()
	out, errOut, err := u.Run(t, []string{"DOCKER_HOST=unix://" + s.sock}, "docker", args...)
	return out + errOut, exitOf(t, err)
}

func exitOf(t *testing.T, err error) int {
	t.Helper()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// auditLines are the service's audit log so far.
func (s *service) auditLines(t *testing.T) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(s.audit)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// audited says whether the log holds a line of uid's with the decision
// and rule.
func (s *service) audited(t *testing.T, uid uint32, decision, rule string) bool {
	for _, m := range s.auditLines(t) {
		if m["uid"] == float64(uid) && m["decision"] == decision && (rule == "" || m["rule"] == rule) {
			return true
		}
	}
	return false
}

// Users outside the docker group do their own work through the service:
// an image (a delta load), a container started from it, a command in it
// with the docker CLI, list, retire --save; and the same listing as root's
// direct use for them.
func TestServiceOwnWork(t *testing.T) {
	d, base, s := serviceOn(t, "svc", "[limits]", `memory = "2g"`, "pids = 512")
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	u := testbed.NewUser(t, homes)
	project := testbed.Prefix(t)
	uid := strconv.FormatUint(uint64(u.UID), 10)
	tag, cname := "ds01-"+uid+"/"+project+":latest", project+"._."+uid
	testbed.RemoveImage(t, d, tag)
	t.Cleanup(func() { removeContainer(t, d, cname) })

	if _, errOut, err := u.Run(t, nil, "docker", "ps"); err == nil || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("the test user reaches the Docker socket: %v %s", err, errOut)
	}
	if out, code := s.through(t, u, "version"); code != 0 || !strings.Contains(out, "the ds01 service at "+s.sock) {
		t.Errorf("version: exit %d:\n%s", code, out)
	}
	out, code := s.through(t, u, "image", "create", project, "--base", base)
	delta := "(" + pipeline.LoadPath{Kind: pipeline.LoadDelta, Store: d.Store}.String() + ")"
	if code != 0 || !strings.Contains(out, tag) || !strings.Contains(out, delta) {
		t.Fatalf("image create through the service: exit %d:\n%s", code, out)
	}
	if got := ownerOf(t, filepath.Join(u.Home, ".ds01-config", "images", project+".json")); got != u.UID {
		t.Errorf("the record is owned by %d, want the user", got)
	}
	out, code = s.through(t, u, "container", "deploy", project, "--start", "--memlock", "8m")
	if code != 0 || !strings.Contains(out, cname+" created and started") {
		t.Fatalf("deploy through the service: exit %d:\n%s", code, out)
	}
	ins, err := d.ContainerInspect(context.Background(), cname, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := ins.Container; c.Config.User != uid+":"+strconv.FormatUint(uint64(u.GID), 10) || c.Config.Labels[label.UserID] != uid || c.HostConfig.Privileged {
		t.Errorf("the container: user %q, %s=%q, privileged %v", c.Config.User, label.UserID, c.Config.Labels[label.UserID], c.HostConfig.Privileged)
	}
	if hc := ins.Container.HostConfig; hc.Memory != 2<<30 || hc.PidsLimit == nil || *hc.PidsLimit != 512 || len(hc.CapAdd) > 0 || hc.IpcMode != "private" || hc.PidMode != "" || hc.NetworkMode == "host" {
		t.Errorf("the policy's limits and isolation: memory %d, pids %v, cap add %v, ipc %q, pid %q, network %q", hc.Memory, hc.PidsLimit, hc.CapAdd, hc.IpcMode, hc.PidMode, hc.NetworkMode)
	}
	if out, code := s.docker(t, u, "exec", cname, "sh", "-c", "id -u; cat /etc/hostname"); code != 0 || !strings.HasPrefix(out, uid+"\n") {
		t.Errorf("docker exec through the service: exit %d:\n%s", code, out)
	}
	if out, code := s.docker(t, u, "ps", "--format", "{{.Names}}"); code != 0 || strings.TrimSpace(out) != cname {
		t.Errorf("docker ps through the service shows %q (exit %d), want only %s", out, code, cname)
	}
	listed, code := s.through(t, u, "image", "list")
	rootOut, rootErr := exec.Command(testbed.Binary(t), "--direct", "--user", u.Login, "image", "list").CombinedOutput()
	if code != 0 || rootErr != nil || listed != string(rootOut) {
		t.Errorf("image list through the service:\n%s\nroot's direct listing for the user:\n%s(%v)", listed, rootOut, rootErr)
	}
	if out, code := s.through(t, u, "container", "list"); code != 0 || !strings.Contains(out, project) {
		t.Errorf("container list: exit %d:\n%s", code, out)
	}
	if out, code := s.through(t, u, "container", "open", project, "sh", "-c", "id -u; pwd; echo saved > ~/note"); code != 0 || out != uid+"\n/workspace\n" {
		t.Errorf("container open with a command through the service: exit %d:\n%q", code, out)
	}
	if out, code := s.through(t, u, "container", "retire", project, "--save"); code != 0 || !strings.Contains(out, "retired "+cname) {
		t.Errorf("retire --save through the service: exit %d:\n%s", code, out)
	}
	if !s.audited(t, u.UID, "allow", "") {
		t.Error("no allow line for the user in the audit log")
	}
}

// Each refusal through the service names its rule, exits non-zero, makes
// nothing, and leaves an audit line.
func TestServiceRefusals(t *testing.T) {
	d, base, s := serviceOn(t, "svcref")
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	alice, bob := testbed.NewUser(t, homes), testbed.NewUser(t, homes)
	project := testbed.Prefix(t)
	auid := strconv.FormatUint(uint64(alice.UID), 10)
	atag, acont := "ds01-"+auid+"/"+project+":latest", project+"._."+auid
	testbed.RemoveImage(t, d, atag)
	t.Cleanup(func() { removeContainer(t, d, acont) })
	if out, code := s.through(t, alice, "image", "create", project, "--base", base); code != 0 {
		t.Fatalf("alice's image: exit %d\n%s", code, out)
	}
	if out, code := s.through(t, alice, "container", "deploy", project, "--start", "--memlock", "8m"); code != 0 {
		t.Fatalf("alice's container: exit %d\n%s", code, out)
	}
	// bob's workspace is a link to /etc, made before his deploy.
	ws := filepath.Join(bob.Home, "workspace")
	if out, err := bob.Command("sh", "-c", "mkdir -p "+ws+" && ln -s /etc "+filepath.Join(ws, "linked")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	bp := testbed.Prefix(t)
	for _, tc := range []struct {
		name   string
		docker bool
		args   []string
		code   int
		want   string
		rule   string
	}{
		{"another user's image as a base", false, []string{"image", "create", bp, "--base", atag}, 1, `rule "bases"`, "bases"},
		{"a base the policy does not list", false, []string{"image", "create", bp, "--base", "busybox:latest"}, 1, `rule "bases"`, "bases"},
		{"GPU variables in the image", false, []string{"image", "create", bp, "--base", base, "--env", "NVIDIA_VISIBLE_DEVICES=all"}, 1, `rule "gpu-env"`, "gpu-env"},
		{"a forged identity", false, []string{"--user", alice.Login, "image", "list"}, 2, "for root itself only", ""},
		{"a bind of /", false, []string{"container", "deploy", bp, "--image", base, "--workspace", "/"}, 1, `rule "data-dirs"`, "data-dirs"},
		{"a bind of /etc", false, []string{"container", "deploy", bp, "--image", base, "--data", "/etc"}, 1, `rule "data-dirs"`, "data-dirs"},
		{"another user's home", false, []string{"container", "deploy", bp, "--image", base, "--data", alice.Home}, 1, "", ""},
		{"a directory the user cannot read", false, []string{"container", "deploy", bp, "--image", base, "--data", "/root"}, 1, "permission denied", ""},
		{"a workspace linked to /etc", false, []string{"container", "deploy", "linked", "--image", base}, 1, "link", ""},
		{"GPUs on a machine without", false, []string{"container", "deploy", bp, "--image", base, "--gpus", "1"}, 1, `rule "gpus"`, "gpus"},
		{"host IPC", false, []string{"container", "deploy", bp, "--image", base, "--ipc", "host"}, 1, "root", ""},
		{"another user's container: retire", false, []string{"container", "retire", project}, 1, "no container", ""},
		{"another user's container: exec", true, []string{"exec", acont, "id"}, 1, "own-containers", "own-containers"},
		{"another user's container: logs", true, []string{"logs", acont}, 1, "own-containers", "own-containers"},
		{"another user's container: inspect", true, []string{"inspect", acont}, 1, "own-containers", "own-containers"},
		{"another user's container: archive", true, []string{"cp", acont + ":/etc/passwd", "/tmp/x"}, 1, "own-containers", "own-containers"},
		{"docker run", true, []string{"run", "--rm", base, "true"}, 125, "ds01 container deploy", "create-through-ds01"},
		{"docker run --privileged", true, []string{"run", "--privileged", "--cap-add", "SYS_ADMIN", "--device", "/dev/kmsg", base, "true"}, 125, "ds01 container deploy", "create-through-ds01"},
		{"docker build", true, []string{"build", "-t", "x", "-"}, 1, "ds01 image create", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out string
			var code int
			if tc.docker {
				out, code = s.docker(t, bob, tc.args...)
			} else {
				out, code = s.through(t, bob, tc.args...)
			}
			if code == 0 || (tc.code != 0 && code != tc.code) || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d and %q:\n%s", code, tc.code, tc.want, out)
			}
			if tc.rule != "" && !s.audited(t, bob.UID, "refuse", tc.rule) {
				t.Errorf("no audit line refusing bob by rule %s", tc.rule)
			}
		})
	}
	// Nothing of bob's was made, and alice's container is as it was.
	bimgs, _ := d.ImageList(context.Background(), client.ImageListOptions{Filters: client.Filters{}.Add("reference", "ds01-"+strconv.FormatUint(uint64(bob.UID), 10)+"/*")})
	if len(bimgs.Items) > 0 {
		t.Errorf("bob's refused requests made images %v", bimgs.Items[0].RepoTags)
	}
	bcs, _ := d.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", label.UserID+"="+strconv.FormatUint(uint64(bob.UID), 10))})
	if len(bcs.Items) > 0 {
		t.Errorf("bob's refused requests made containers %v", bcs.Items[0].Names)
	}
	if ins, err := d.ContainerInspect(context.Background(), acont, client.ContainerInspectOptions{}); err != nil || !ins.Container.State.Running {
		t.Errorf("alice's container after bob's attempts: %v", err)
	}
}

// Many users at once: 20 creates and deploys from 5 users, all through
// one service; every one succeeds or says why, nothing is left half made,
// and a client killed in the middle of a create leaves nothing behind. A
// restart of the idle service loses nothing.
func TestServiceLoad(t *testing.T) {
	d, base, s := serviceOn(t, "svcload")
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	var users []testbed.User
	for range 5 {
		users = append(users, testbed.NewUser(t, homes))
	}
	type job struct {
		u       testbed.User
		project string
	}
	var jobs []job
	for _, u := range users {
		for range 2 {
			p := testbed.Prefix(t)
			jobs = append(jobs, job{u, p})
			uid := strconv.FormatUint(uint64(u.UID), 10)
			testbed.RemoveImage(t, d, "ds01-"+uid+"/"+p+":latest")
			t.Cleanup(func() { removeContainer(t, d, p+"._."+uid) })
		}
	}
	errs := make(chan string, len(jobs))
	for _, j := range jobs {
		go func() {
			out, code := s.through(t, j.u, "image", "create", j.project, "--base", base)
			if code == 0 {
				out, code = s.through(t, j.u, "container", "deploy", j.project, "--memlock", "8m")
			}
			if code != 0 {
				errs <- fmt.Sprintf("%s/%s: exit %d\n%s", j.u.Login, j.project, code, out)
				return
			}
			errs <- ""
		}()
	}
	for range jobs {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
	for _, j := range jobs {
		uid := strconv.FormatUint(uint64(j.u.UID), 10)
		if _, err := d.ContainerInspect(context.Background(), j.project+"._."+uid, client.ContainerInspectOptions{}); err != nil {
			t.Errorf("%s's container %s: %v", j.u.Login, j.project, err)
		}
	}
	assertNoLoadingTags(t, d, users)

	// A client killed while its create runs.
	u := users[0]
	p := testbed.Prefix(t)
	uid := strconv.FormatUint(uint64(u.UID), 10)
	testbed.RemoveImage(t, d, "ds01-"+uid+"/"+p+":latest")
	c := u.Command(testbed.Binary(t), "image", "create", p, "--base", base, "--env", "X=1")
	c.Env = append(c.Env, "DS01_HOST=unix://"+s.sock)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	c.Process.Kill()
	c.Wait()
	time.Sleep(2 * time.Second) // the service sees the hang-up and cleans up
	assertNoLoadingTags(t, d, users)
	_, imgErr := d.ImageInspect(context.Background(), "ds01-"+uid+"/"+p+":latest")
	_, recErr := os.Lstat(filepath.Join(u.Home, ".ds01-config", "images", p+".json"))
	if (imgErr == nil) != (recErr == nil) {
		t.Errorf("a killed create left the image (%v) without its record (%v), or the other way round", imgErr, recErr)
	}
	before, code := s.through(t, u, "container", "list")
	if code != 0 || !strings.Contains(before, jobs[0].project) {
		t.Errorf("the service after the killed client: exit %d\n%s", code, before)
	}
	s.stop()
	s.start(t)
	if after, code := s.through(t, u, "container", "list"); code != 0 || after != before {
		t.Errorf("container list after a restart (exit %d):\n%s\nbefore:\n%s", code, after, before)
	}
}

// assertNoLoadingTags: no image of the users is left under a temporary
// load tag.
func assertNoLoadingTags(t *testing.T, d interface {
	ImageList(context.Context, client.ImageListOptions) (client.ImageListResult, error)
}, users []testbed.User) {
	t.Helper()
	imgs, err := d.ImageList(context.Background(), client.ImageListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range imgs.Items {
		for _, tag := range im.RepoTags {
			for _, u := range users {
				if strings.Contains(tag, ":ds01-loading-") && strings.HasPrefix(tag, fmt.Sprintf("ds01-%d/", u.UID)) {
					t.Errorf("left %s", tag)
				}
			}
		}
	}
}

// The setuid escape through the service: root in the container leaves a
// setuid-root shell in /workspace; run by its host path it gives the user
// nothing (homes on nosuid,nodev); on a home that honours setuid bits the
// deploy is refused by the setuid rule.
func TestServiceSetuidEscape(t *testing.T) {
	d, base, s := serviceOn(t, "svcsetuid")
	ctx := context.Background()
	for _, tc := range []struct {
		homes testbed.Homes
		ok    bool
	}{{testbed.HardenedHomes, true}, {testbed.PlainHomes, false}} {
		u := testbed.NewUser(t, testbed.HomesDir(t, tc.homes))
		project := testbed.Prefix(t)
		uid := strconv.FormatUint(uint64(u.UID), 10)
		cname := project + "._." + uid
		testbed.RemoveImage(t, d, "ds01-"+uid+"/"+project+":latest")
		t.Cleanup(func() { removeContainer(t, d, cname) })
		if out, code := s.through(t, u, "image", "create", project, "--base", base); code != 0 {
			t.Fatalf("image create: exit %d\n%s", code, out)
		}
		out, code := s.through(t, u, "container", "deploy", project, "--start", "--memlock", "8m")
		if !tc.ok {
			if code == 0 || !strings.Contains(out, "the setuid rule") {
				t.Errorf("deploy on a home that honours setuid: exit %d, want the setuid rule:\n%s", code, out)
			}
			if _, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{}); err == nil {
				t.Errorf("the refused deploy left %s", cname)
			}
			continue
		}
		if code != 0 {
			t.Fatalf("deploy: exit %d\n%s", code, out)
		}
		if _, err := d.Exec(ctx, cname, "0:0", "sh", "-c", "cp /bin/bash /workspace/sh && chmod 4755 /workspace/sh"); err != nil {
			t.Fatal(err)
		}
		sh := filepath.Join(u.Home, "workspace", project, "sh")
		if ownerOf(t, sh) != 0 {
			t.Fatalf("%s is not root's on the host", sh)
		}
		euid, _, err := u.Run(t, nil, sh, "-p", "-c", "id -u")
		if err != nil || strings.TrimSpace(euid) != uid {
			t.Errorf("the setuid shell run by its host path gave euid %q (%v), want the user's %s", euid, err, uid)
		}
	}
}

// A workspace swapped for a link to / after the deploy: Docker, started
// through the service's socket, still binds the checked directory (the
// pin); after a reboot (pins gone) Docker cannot start it, and
// container open refuses to pin the link.
func TestServiceWorkspaceSwapped(t *testing.T) {
	d, base, s := serviceOn(t, "svcswap")
	ctx := context.Background()
	u := testbed.NewUser(t, testbed.HomesDir(t, testbed.HardenedHomes))
	project := testbed.Prefix(t)
	uid := strconv.FormatUint(uint64(u.UID), 10)
	cname := project + "._." + uid
	testbed.RemoveImage(t, d, "ds01-"+uid+"/"+project+":latest")
	t.Cleanup(func() { removeContainer(t, d, cname); binds.Unpin(cname) })
	if out, code := s.through(t, u, "image", "create", project, "--base", base); code != 0 {
		t.Fatalf("image create: exit %d\n%s", code, out)
	}
	if out, code := s.through(t, u, "container", "deploy", project, "--memlock", "8m"); code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	ws := filepath.Join(u.Home, "workspace", project)
	if out, err := u.Command("sh", "-c", "echo mine > "+ws+"/marker && mv "+ws+" "+ws+".old && ln -s / "+ws).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, code := s.docker(t, u, "start", cname); code != 0 {
		t.Fatalf("docker start through the service: exit %d\n%s", code, out)
	}
	if out, code := s.docker(t, u, "exec", cname, "ls", "/workspace"); code != 0 || strings.TrimSpace(out) != "marker" {
		t.Errorf("/workspace after the swap holds %q (exit %d), want the checked directory's marker", out, code)
	}
	s.docker(t, u, "stop", "-t", "1", cname)
	if err := binds.Unpin(cname); err != nil { // a reboot
		t.Fatal(err)
	}
	if out, code := s.docker(t, u, "start", cname); code == 0 {
		t.Errorf("docker started the container with its pin gone:\n%s", out)
		s.docker(t, u, "stop", "-t", "1", cname)
	}
	out, code := s.through(t, u, "container", "open", project)
	if code == 0 || !strings.Contains(out, "retire the container and deploy it again") {
		t.Errorf("container open after the swap: exit %d\n%s", code, out)
	}
	if ins, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{}); err != nil || ins.Container.State.Running {
		t.Errorf("the container after the refused open: %v", err)
	}
}

// A user's image goes to the lab's registry through the service (the
// service's push repository, the user's own credentials: none needed on
// the test bed's registry) and comes back under another project, as the
// same image.
func TestServicePushPull(t *testing.T) {
	reg := testbed.StartRegistry(t)
	d, base, s := serviceOn(t, "svcpush")
	u := testbed.NewUser(t, testbed.HomesDir(t, testbed.HardenedHomes))
	uid := strconv.FormatUint(uint64(u.UID), 10)
	project, back := testbed.Prefix(t), testbed.Prefix(t)
	for _, p := range []string{project, back} {
		testbed.RemoveImage(t, d, "ds01-"+uid+"/"+p+":latest")
	}
	if out, code := s.through(t, u, "image", "create", project, "--base", base); code != 0 {
		t.Fatalf("image create: exit %d\n%s", code, out)
	}
	repo := reg.Host + "/ds01-" + uid + "/" + project
	out, code := s.through(t, u, "image", "push", project, "--to", repo)
	if code != 0 {
		t.Fatalf("image push through the service: exit %d\n%s", code, out)
	}
	local, err := d.ImageInspect(context.Background(), "ds01-"+uid+"/"+project+":latest")
	if err != nil {
		t.Fatal(err)
	}
	out, code = s.through(t, u, "image", "pull", repo+":latest", "--project", back)
	if code != 0 {
		t.Fatalf("image pull through the service: exit %d\n%s", code, out)
	}
	pulled, err := d.ImageInspect(context.Background(), "ds01-"+uid+"/"+back+":latest")
	if err != nil || pulled.ID != local.ID {
		t.Errorf("pulled %s as %v (%v), want the pushed image %s", back, pulled.ID, err, local.ID)
	}
	if _, err := os.Lstat(filepath.Join(u.Home, ".ds01-config", "images", back+".json")); err != nil {
		t.Errorf("no record of the pulled image: %v", err)
	}
}
