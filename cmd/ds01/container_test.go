package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/deploy/binds"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"
)

// In deployed containers the user runs as UID:GID with video added, as
// AIME does; sudo comes from sudoers.d, not the group.
var bakerInContainer = passwd.Account{Name: "h-baker", UID: 1722830498, GID: 1722830498, Groups: []string{"video"}}

// removeContainer removes a test's container when it ends, and the pins
// of its bind sources (ds01 retire would take them away).
func removeContainer(t *testing.T, d *deploy.Daemon, name string) {
	t.Cleanup(func() {
		d.ContainerRemove(context.Background(), name, client.ContainerRemoveOptions{Force: true})
		binds.Unpin(name)
	})
}

func imageCount(t *testing.T, d *deploy.Daemon) int {
	t.Helper()
	res, err := d.ImageList(context.Background(), client.ImageListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Items)
}

// checkInside runs the user checks in the running container and checks
// that /workspace is the host directory.
func checkInside(t *testing.T, d *deploy.Daemon, container, workspace string, files *layers.Files) {
	t.Helper()
	testbed.AssertUser(t, func(ctx context.Context, script string) (engine.RunResult, error) {
		return d.Exec(ctx, container, "1722830498:1722830498", "bash", "-lc", script)
	}, files, bakerInContainer)
	fi, err := os.Stat(filepath.Join(workspace, "probe"))
	if err != nil {
		t.Fatalf("/workspace/probe made inside is not in the host directory %s: %v", workspace, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1722830498 {
		t.Errorf("probe owned by %d", st.Uid)
	}
}

// The three flows of the second seed, on each engine.
func TestContainerDeployFlows(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) { testContainerDeployFlows(t, e) })
	}
}

func testContainerDeployFlows(t *testing.T, e testEngine) {
	d := e.d
	ctx := context.Background()
	c := e.cli(t)
	// A catalog-style base: no DS01 labels.
	base := e.loadBase(t, c, testbed.Base(t, testbed.Bookworm), "aime-pytorch")
	baseIns, _ := d.ImageInspect(ctx, base)
	files, err := source.Files(ctx, d.Docker, baseIns.ID, layers.UserWant)
	if err != nil {
		t.Fatal(err)
	}
	name := testbed.Prefix(t)
	tag := "ds01-1722830498/" + name + ":latest"
	testbed.RemoveImage(t, d, tag)
	cname := name + "._.1722830498"
	removeContainer(t, d, cname)
	ws := filepath.Join(t.TempDir(), "ws")

	// 1. Unlabelled base: the user layer is assembled onto it, then the
	// container is made; no docker run, no commit.
	out, code := c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--image", base, "--workspace", ws, "--start", "--memlock", "8m")...)
	if code != 0 || !strings.Contains(out, "flow: "+deploy.FlowAssembled.String()+"\n") {
		t.Fatalf("flow 1: exit %d:\n%s", code, out)
	}
	if _, err := d.ImageInspect(ctx, tag); err != nil {
		t.Fatalf("flow 1 made no %s: %v", tag, err)
	}
	checkInside(t, d, cname, ws, files)
	if out, code := c.run(append(asBaker, "container", "retire", name)...); code != 0 {
		t.Fatalf("retire: exit %d:\n%s", code, out)
	}

	// 3. The labelled image now matches: the container comes straight
	// from it, and no image is made.
	before := imageCount(t, d)
	out, code = c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--workspace", ws, "--start", "--memlock", "8m")...)
	if code != 0 || !strings.Contains(out, "flow: "+deploy.FlowLabelled.String()+"\n") {
		t.Fatalf("flow 3: exit %d:\n%s", code, out)
	}
	if after := imageCount(t, d); after != before {
		t.Errorf("flow 3 changed the image count: %d → %d", before, after)
	}
	os.Remove(filepath.Join(ws, "probe"))
	checkInside(t, d, cname, ws, files)
	// container open gives a login shell as the user (here fed from a
	// pipe; on a terminal it is interactive).
	d.ContainerStop(ctx, cname, client.ContainerStopOptions{})
	out, code = c.runIn("id -un; pwd; echo $HOME\n", append(asBaker, "container", "open", name)...)
	if code != 0 || !strings.Contains(out, "h-baker\n/workspace\n/home/h-baker\n") {
		t.Errorf("container open (stopped container): exit %d:\n%s", code, out)
	}
	if out, code := c.run(append(asBaker, "container", "retire", name)...); code != 0 {
		t.Fatalf("retire: exit %d:\n%s", code, out)
	}

	// 2. Labels for another user: refused with the seed's advice; with
	// --force the user layer is assembled again for this user.
	other := []string{"--user", "alice", "--uid", "20000000", "--gid", "20000000"}
	otherWS := filepath.Join(t.TempDir(), "ws-alice")
	// Cleanups run last-first: the container goes before its image.
	testbed.RemoveImage(t, d, "ds01-20000000/"+name+":latest")
	removeContainer(t, d, name+"._.20000000")
	out, code = c.run(append(other, "container", "deploy", "--accept-setuid-risk", name, "--image", tag, "--workspace", otherWS)...)
	if code != 1 || !strings.Contains(out, "image create "+name+" --force") || !strings.Contains(out, "1722830498:1722830498") {
		t.Fatalf("flow 2 without --force: exit %d:\n%s", code, out)
	}
	if _, err := d.ContainerInspect(ctx, name+"._.20000000", client.ContainerInspectOptions{}); err == nil {
		t.Fatal("a refused deploy left a container")
	}
	out, code = c.run(append(other, "container", "deploy", "--accept-setuid-risk", name, "--image", tag, "--workspace", otherWS, "--force", "--start", "--memlock", "8m")...)
	if code != 0 || !strings.Contains(out, "flow: "+deploy.FlowReassembled.String()+"\n") {
		t.Fatalf("flow 2 with --force: exit %d:\n%s", code, out)
	}
	r, err := d.Exec(ctx, name+"._.20000000", "20000000:20000000", "bash", "-lc", "id -un; echo $HOME; sudo -n true && echo sudo-ok; stat -c %s /var/log/lastlog /var/log/faillog; touch /workspace/probe && echo ws-ok")
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("exec: %v %+v", err, r)
	}
	if want := "alice\n/home/alice\nsudo-ok\n0\n0\nws-ok\n"; r.Stdout != want {
		t.Errorf("inside alice's container:\n%s\nwant:\n%s", r.Stdout, want)
	}
	if _, err := os.Stat(filepath.Join(otherWS, "probe")); err != nil {
		t.Errorf("alice's workspace: %v", err)
	}
}

// What a container is created with, read back from docker inspect.
func TestContainerDeployConfig(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "cfg")
	c := newCLI(t)
	name := testbed.Prefix(t)
	cname := name + "._.1722830498"
	testbed.RemoveImage(t, d, "ds01-1722830498/"+name+":latest")
	removeContainer(t, d, cname)
	dir := t.TempDir()
	ws, data, models := filepath.Join(dir, "ws"), filepath.Join(dir, "data"), filepath.Join(dir, "models")
	os.Mkdir(data, 0o755)
	os.Mkdir(models, 0o755)

	// --dry-run prints the request and makes nothing.
	out, code := c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--image", base, "--workspace", ws, "--gpus", "device=0,2", "--dry-run")...)
	if code != 0 || !strings.Contains(out, `"DeviceIDs": [`) {
		t.Fatalf("dry run: exit %d:\n%s", code, out)
	}
	var req client.ContainerCreateOptions
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &req); err != nil || req.Name != cname {
		t.Fatalf("dry run JSON: %v %+v", err, req.Name)
	}
	if _, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{}); err == nil {
		t.Fatal("dry run made a container")
	}
	if _, err := os.Stat(ws); err == nil {
		t.Error("dry run made the workspace")
	}

	out, code = c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--image", base, "--workspace", ws, "--data", data, "--models", models,
		"--gpus", "device=0,2", "--shm-size", "2g", "--cgroup-parent", "ds01-h-baker.slice")...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	ins, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ci := ins.Container
	hc := ci.HostConfig
	if len(hc.DeviceRequests) != 1 || hc.DeviceRequests[0].Driver != "nvidia" || !slices.Equal(hc.DeviceRequests[0].DeviceIDs, []string{"0", "2"}) || !slices.Equal(hc.DeviceRequests[0].Capabilities[0], []string{"gpu"}) {
		t.Errorf("device requests %+v", hc.DeviceRequests)
	}
	if hc.ShmSize != 2<<30 || hc.IpcMode == "host" {
		t.Errorf("shm %d, ipc %q", hc.ShmSize, hc.IpcMode)
	}
	if hc.CgroupParent != "ds01-h-baker.slice" {
		t.Errorf("cgroup parent %q", hc.CgroupParent)
	}
	ul := map[string][2]int64{}
	for _, u := range hc.Ulimits {
		ul[u.Name] = [2]int64{u.Soft, u.Hard}
	}
	if ul["memlock"] != [2]int64{-1, -1} || ul["stack"] != [2]int64{67108864, 67108864} {
		t.Errorf("ulimits %v", ul)
	}
	if !slices.Contains(hc.GroupAdd, "video") {
		t.Errorf("group-add %v", hc.GroupAdd)
	}
	mounts := map[string]string{}
	for _, m := range ci.Mounts {
		mounts[m.Destination] = m.Source
	}
	if mounts["/workspace"] != ws || mounts["/data"] != data || mounts["/models"] != models {
		t.Errorf("mounts %v", mounts)
	}
	if ci.Config.User != "1722830498:1722830498" || ci.Config.WorkingDir != "/workspace" || ci.Config.Hostname != name || !ci.Config.Tty || !ci.Config.OpenStdin {
		t.Errorf("config: user %q workdir %q hostname %q tty %v stdin %v", ci.Config.User, ci.Config.WorkingDir, ci.Config.Hostname, ci.Config.Tty, ci.Config.OpenStdin)
	}
	for k, want := range map[string]string{
		"aime.mlc": "h.baker@hertie-school.lan", "aime.mlc.NAME": name, "aime.mlc.USER": "h.baker@hertie-school.lan",
		"aime.mlc.WORK_MOUNT": ws, "aime.mlc.DATA_MOUNT": data, "aime.mlc.MODELS_MOUNT": models, "aime.mlc.GPUS": "device=0%2C2",
		"ds01.user": "h.baker@hertie-school.lan", "ds01.name": name, "ds01.managed": "true", "ds01.gpus": "device=0%2C2", "ds01.interface": "cli",
	} {
		if got := ci.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q; want %q", k, got, want)
		}
	}
	for _, k := range []string{"aime.mlc.MLC_VERSION", "aime.mlc.FRAMEWORK", "aime.mlc.ARCH", "ds01.created_at"} {
		if ci.Config.Labels[k] == "" {
			t.Errorf("label %s missing", k)
		}
	}
	if fi, err := os.Stat(ws); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1722830498 {
		t.Errorf("workspace not made for the user: %v", err)
	}

	// Without a GPU runtime, --start fails clearly and leaves nothing.
	out, code = c.run(append(asBaker, "container", "retire", name)...)
	if code != 0 {
		t.Fatalf("retire: exit %d:\n%s", code, out)
	}
	out, code = c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--workspace", ws, "--gpus", "all", "--memlock", "8m", "--start")...)
	if code != 1 || !strings.Contains(out, "no GPU runtime") {
		t.Fatalf("start without a GPU runtime: exit %d:\n%s", code, out)
	}
	if _, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{}); err == nil {
		t.Error("a failed start left the container")
	}

	// list shows the user's containers; another user's are not theirs.
	out, code = c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--workspace", ws)...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = c.run(append(asBaker, "container", "list", "--json")...)
	var list []deploy.ContainerInfo
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || !slices.ContainsFunc(list, func(c deploy.ContainerInfo) bool { return c.Name == cname && c.Workspace == ws }) {
		t.Errorf("container list: exit %d %v:\n%s", code, err, out)
	}
	if out, code := c.run("--user", "alice", "--uid", "20000000", "--gid", "20000000", "container", "retire", name); code != 1 || !strings.Contains(out, "no container "+name+"._.20000000") {
		t.Errorf("retire by another user: exit %d:\n%s", code, out)
	}
	if out, code := c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--workspace", ws)...); code != 1 || !strings.Contains(out, "exists") {
		t.Errorf("deploy over an existing container: exit %d:\n%s", code, out)
	}
	// An image a container uses is not retired without --force.
	if out, code := c.run(append(asBaker, "image", "retire", name)...); code != 1 || !strings.Contains(out, "used by container(s) "+cname) {
		t.Errorf("retire of an image in use: exit %d:\n%s", code, out)
	}
	if _, err := d.ImageInspect(ctx, "ds01-1722830498/"+name+":latest"); err != nil {
		t.Errorf("image gone after a refused retire: %v", err)
	}
}

// retire --save puts the container's changes back into its image as one
// layer, without docker commit, leaving out what must not be kept.
func TestContainerRetireSave(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	base := loadBase(t, d, testbed.Base(t, testbed.Bookworm), "save")
	c := newCLI(t)
	name := testbed.Prefix(t)
	tag := "ds01-1722830498/" + name + ":latest"
	cname := name + "._.1722830498"
	testbed.RemoveImage(t, d, tag)
	removeContainer(t, d, cname)
	ws := filepath.Join(t.TempDir(), "ws")
	if out, code := c.run(append(asBaker, "image", "create", name, "--base", base)...); code != 0 {
		t.Fatalf("image create: exit %d:\n%s", code, out)
	}
	before, _ := d.ImageInspect(ctx, tag)
	deployArgs := append(asBaker, "container", "deploy", "--accept-setuid-risk", name, "--workspace", ws, "--start", "--memlock", "8m")
	if out, code := c.run(deployArgs...); code != 0 {
		t.Fatalf("deploy: exit %d:\n%s", code, out)
	}
	r, err := d.Exec(ctx, cname, "1722830498:1722830498", "bash", "-lc", `set -e
echo mine > ~/note.txt
sudo sh -c 'echo tool > /opt/tool'
echo junk > /tmp/junk
mkdir -p ~/.cache && echo c > ~/.cache/junk
echo ws > /workspace/wsfile
sudo sh -c 'head -c 4096 /dev/zero > /var/log/lastlog'
sudo rm /etc/skel/.bash_logout`)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("changes: %v %+v", err, r)
	}
	out, code := c.run(append(asBaker, "container", "retire", name, "--save", "-v")...)
	if code != 0 {
		t.Fatalf("retire --save: exit %d:\n%s", code, out)
	}
	for _, want := range []string{"/home/h-baker/note.txt\n", "/opt/tool\n", "/etc/skel/.wh..bash_logout\n", "retired " + cname} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"/tmp", ".cache", "lastlog", "/workspace", "hostname", "resolv.conf"} {
		if strings.Contains(out, not) {
			t.Errorf("saved %s:\n%s", not, out)
		}
	}
	after, err := d.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.RootFS.Layers) != len(before.RootFS.Layers)+1 || after.Config.Labels["aime.mlc.DS01_USER_ID"] != "1722830498" || after.Config.Labels["ds01.project"] != name {
		t.Errorf("saved image: %d layers (was %d), labels %v", len(after.RootFS.Layers), len(before.RootFS.Layers), after.Config.Labels)
	}
	hist, _ := d.ImageHistory(ctx, tag)
	if top := hist.Items[0]; top.Size > 64<<10 || !strings.Contains(top.CreatedBy, "retire --save") {
		t.Errorf("saved layer: %d bytes, %q; want only the changes", top.Size, top.CreatedBy)
	}
	if _, err := d.ImageInspect(ctx, before.ID); err == nil {
		t.Error("the image the container came from is left behind, untagged")
	}

	if out, code := c.run(deployArgs...); code != 0 {
		t.Fatalf("deploy again: exit %d:\n%s", code, out)
	}
	r, err = d.Exec(ctx, cname, "1722830498:1722830498", "bash", "-lc",
		`cat ~/note.txt /opt/tool; stat -c %s /var/log/lastlog; ls /tmp/junk ~/.cache/junk /etc/skel/.bash_logout 2>&1 | grep -c 'No such file'`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "mine\ntool\n0\n3\n"; r.Stdout != want {
		t.Errorf("in the new container:\n%s%s\nwant:\n%s", r.Stdout, r.Stderr, want)
	}
	if out, code := c.run(append(asBaker, "image", "update", name)...); code != 1 || !strings.Contains(out, "--discard-saved") {
		t.Errorf("update over saved layers: exit %d:\n%s", code, out)
	}
}

// Finding 10 of the trust issue: a container of another project's image
// saves into that project, and its record notes it, so image update of
// that project does not drop the saved files silently.
func TestRetireSaveRecordsTheImagesProject(t *testing.T) {
	d := testbed.Docker(t)
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "saveproj")
	c := newCLI(t)
	project, other := testbed.Prefix(t), testbed.Prefix(t)
	tag := "ds01-1722830498/" + project + ":latest"
	testbed.RemoveImage(t, d, tag)
	removeContainer(t, d, other+"._.1722830498")
	if out, code := c.run(append(asBaker, "image", "create", project, "--base", base)...); code != 0 {
		t.Fatalf("image create: exit %d:\n%s", code, out)
	}
	ws := filepath.Join(t.TempDir(), "ws")
	if out, code := c.run(append(asBaker, "container", "deploy", "--accept-setuid-risk", other, "--image", tag, "--workspace", ws, "--start", "--memlock", "8m")...); code != 0 {
		t.Fatalf("deploy: exit %d:\n%s", code, out)
	}
	if r, err := d.Exec(context.Background(), other+"._.1722830498", "1722830498:1722830498", "bash", "-lc", "echo kept > ~/kept.txt"); err != nil || r.ExitCode != 0 {
		t.Fatalf("%v %+v", err, r)
	}
	if out, code := c.run(append(asBaker, "container", "retire", other, "--save")...); code != 0 || !strings.Contains(out, "into "+tag) {
		t.Fatalf("retire --save: exit %d, want the layer saved into %s:\n%s", code, tag, out)
	}
	data, err := os.ReadFile(filepath.Join(c.config, "images", project+".json"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := record.DecodeRecord(data)
	if err != nil || len(rec.Saved) != 1 || rec.Saved[0].Container != other+"._.1722830498" {
		t.Errorf("record of %s: %+v, %v; want the saved layer noted", project, rec.Saved, err)
	}
	if _, err := os.Stat(filepath.Join(c.config, "images", other+".json")); err == nil {
		t.Errorf("a record was made for the container's name %s", other)
	}
	if out, code := c.run(append(asBaker, "image", "update", project)...); code != 1 || !strings.Contains(out, "--discard-saved") {
		t.Errorf("update of %s over the saved layer: exit %d:\n%s", project, code, out)
	}
}
