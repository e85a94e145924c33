package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/deploy/binds"
	"github.com/ds01/ds01/internal/testbed"
)

// sudoer is a real user, outside the docker group, allowed to run the
// ds01 binary (and nothing else) through sudo without a password: the
// deployment the README's sudo section describes.
type sudoer struct {
	testbed.User
	t   *testing.T
	bin string
}

func newSudoer(t *testing.T, homes string) sudoer {
	t.Helper()
	bin := testbed.Binary(t)
	u := testbed.NewUser(t, homes)
	u.AllowSudo(t, bin)
	return sudoer{User: u, t: t, bin: bin}
}

// ds01 runs `sudo -n ds01 args…` as the user: output and exit code.
func (s sudoer) ds01(args ...string) (string, int) {
	s.t.Helper()
	out, errOut, err := s.Run(s.t, nil, "sudo", append([]string{"-n", s.bin}, args...)...)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return out + errOut, code
}

func (s sudoer) tag(project string) string {
	return "ds01-" + strconv.FormatUint(uint64(s.UID), 10) + "/" + project + ":latest"
}

func (s sudoer) container(name string) string {
	return name + "._." + strconv.FormatUint(uint64(s.UID), 10)
}

func ownerOf(t *testing.T, p string) uint32 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

// Test users cannot reach Docker at all: everything below goes through
// ds01, as root, for them.
func TestSudoUsersHaveNoDocker(t *testing.T) {
	testbed.Docker(t)
	u := newSudoer(t, testbed.HomesDir(t, testbed.PlainHomes))
	out, stderr, err := u.Run(t, nil, "docker", "ps")
	if err == nil || !strings.Contains(stderr, "permission denied") {
		t.Fatalf("docker ps as a test user: %v, want permission denied on the socket:\n%s%s", err, out, stderr)
	}
}

// Finding 1: through sudo, ds01 has the user's rights and no others.
func TestSudoIsTheUser(t *testing.T) {
	d := testbed.Docker(t)
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	u := newSudoer(t, homes)
	other := testbed.NewUser(t, homes)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"act for another user", []string{"--user", other.Login, "image", "list"}, 2, "for root itself only; you are " + u.Login},
		{"another UID", []string{"--user", u.Login, "--uid", "0", "--gid", "0", "image", "list"}, 2, "for root itself only"},
		{"every user's containers", []string{"container", "list", "--all"}, 2, "root only"},
		{"a cgroup of one's choosing", []string{"container", "deploy", "x", "--image", "debian", "--cgroup-parent", "system.slice", "--dry-run"}, 1, "--cgroup-parent system.slice takes the container out of your slice: for root itself only"},
		{"the host's IPC namespace", []string{"container", "deploy", "x", "--image", "debian", "--ipc", "host", "--dry-run"}, 1, "--ipc host shares the host's IPC namespace"},
		{"accepting the setuid risk", []string{"container", "deploy", "x", "--image", "debian", "--accept-setuid-risk", "--dry-run"}, 1, "--accept-setuid-risk: for root itself only"},
		{"pruning root's cache", []string{"base", "prune", "--dry-run"}, 2, "it is for root itself"},
		{"judging every user's package images", []string{"image", "prune", "--dry-run"}, 2, "it is for root itself"},
		{"the demo as root", []string{"demo"}, 2, "not through sudo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := u.ds01(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d and %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}

	// --legacy sees only the user's own committed images.
	ctx := context.Background()
	prefix := testbed.Prefix(t)
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "legacy")
	mine := prefix + "/mine:c._." + strconv.FormatUint(uint64(u.UID), 10)
	theirs := prefix + "/theirs:c._." + strconv.FormatUint(uint64(other.UID), 10)
	for _, tag := range []string{mine, theirs} {
		if _, err := d.ImageTag(ctx, client.ImageTagOptions{Source: base, Target: tag}); err != nil {
			t.Fatal(err)
		}
		testbed.RemoveImage(t, d, tag)
	}
	out, code := u.ds01("image", "list", "--legacy", "--json")
	if code != 0 || !strings.Contains(out, mine) || strings.Contains(out, theirs) {
		t.Errorf("image list --legacy through sudo: exit %d, want only %s:\n%s", code, mine, out)
	}
	out, code = u.ds01("image", "retire", "--legacy", "--yes")
	if code != 0 || strings.Contains(out, theirs) {
		t.Errorf("image retire --legacy through sudo: exit %d:\n%s", code, out)
	}
	if _, err := d.ImageInspect(ctx, theirs); err != nil {
		t.Errorf("the other user's committed image is gone after a sudo retire --legacy: %v", err)
	}
}

// createAs makes the user's image p on base through sudo, for tests that
// need one.
func (s sudoer) createAs(base, project string) {
	s.t.Helper()
	out, code := s.ds01("image", "create", project, "--base", base)
	if code != 0 {
		s.t.Fatalf("image create through sudo: exit %d:\n%s", code, out)
	}
}

// Finding 2: records are written as the user, and a records directory
// pointed at root's gets nothing of root's chowned, replaced or deleted.
func TestSudoRecordsAsUser(t *testing.T) {
	d := testbed.Docker(t)
	u := newSudoer(t, testbed.HomesDir(t, testbed.HardenedHomes))
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "records")
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, u.tag(project))

	u.createAs(base, project)
	rec := filepath.Join(u.Home, ".ds01-config", "images", project+".json")
	for _, p := range []string{filepath.Dir(filepath.Dir(rec)), filepath.Dir(rec), rec} {
		if got := ownerOf(t, p); got != u.UID {
			t.Errorf("%s owned by %d, want the user %d", p, got, u.UID)
		}
	}

	// The user swaps the records directory for a link to root's.
	rootDir := t.TempDir()
	rootFile := filepath.Join(rootDir, project+".json")
	if err := os.WriteFile(rootFile, []byte("root's own\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	recDir := filepath.Dir(rec)
	if out, err := u.Command("sh", "-c", "rm -rf "+recDir+" && ln -s "+rootDir+" "+recDir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Both are refused at the project's lock beside the records, before
	// anything is changed.
	before, err := d.ImageInspect(context.Background(), u.tag(project))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"image", "retire", project}, {"image", "create", project, "--base", base, "--force"}} {
		out, code := u.ds01(args...)
		if code != 1 || !strings.Contains(out, "a symbolic link") {
			t.Errorf("%v with the records directory a link to root's: exit %d, want a refusal naming the link:\n%s", args, code, out)
		}
	}
	data, err := os.ReadFile(rootFile)
	if err != nil || string(data) != "root's own\n" || ownerOf(t, rootFile) != 0 {
		t.Errorf("root's file after both: %q, %v, owner %d", data, err, ownerOf(t, rootFile))
	}
	if ents, _ := os.ReadDir(rootDir); len(ents) != 1 {
		t.Errorf("root's directory now holds %v", ents)
	}
	after, err := d.ImageInspect(context.Background(), u.tag(project))
	if err != nil || after.ID != before.ID {
		t.Errorf("the refused commands changed %s: %v", u.tag(project), err)
	}
}

// Finding 4: image update validates the record like typed flags.
func TestSudoUpdateTrustsNoRecord(t *testing.T) {
	d := testbed.Docker(t)
	u := newSudoer(t, testbed.HomesDir(t, testbed.HardenedHomes))
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "update")
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, u.tag(project))
	u.createAs(base, project)
	secret := t.TempDir() // root's, 0700
	os.Chmod(secret, 0o700)
	os.WriteFile(filepath.Join(secret, "key.whl"), []byte("root's key"), 0o600)

	rec := filepath.Join(u.Home, ".ds01-config", "images", project+".json")
	for _, tc := range []struct {
		name  string
		edit  func(map[string]any)
		want  string
		notIn string
	}{
		{"a wheel directory only root reads", func(r map[string]any) {
			r["packages"] = map[string]any{"pip": []string{"x"}, "find_links": secret}
		}, "ds01 mounts only a directory you may read yourself", ""},
		{"a pip option", func(r map[string]any) {
			r["packages"] = map[string]any{"pip": []string{"--index-url=http://evil.example/"}}
		}, "not a requirement specifier", ""},
		{"another project's image", func(r map[string]any) { r["image"] = "ds01-1/other:latest" }, "is not the project's", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(rec)
			if err != nil {
				t.Fatal(err)
			}
			var r map[string]any
			json.Unmarshal(data, &r)
			tc.edit(r)
			edited, _ := json.Marshal(r)
			c := u.Command("sh", "-c", "cat > "+rec)
			c.Stdin = strings.NewReader(string(edited))
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			t.Cleanup(func() {
				c := u.Command("sh", "-c", "cat > "+rec)
				c.Stdin = strings.NewReader(string(data))
				c.Run()
			})
			out, code := u.ds01("image", "update", project)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want a refusal with %q:\n%s", code, tc.want, out)
			}
		})
	}
}

// Finding 5: workspaces are resolved beneath the home without links and
// made as the user.
func TestSudoWorkspace(t *testing.T) {
	d := testbed.Docker(t)
	u := newSudoer(t, testbed.HomesDir(t, testbed.HardenedHomes))
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "ws")
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, u.tag(project))
	u.createAs(base, project)
	removeContainer(t, d, u.container(project))

	// ~/workspace a link to a root-owned directory.
	rootDir := t.TempDir()
	ws := filepath.Join(u.Home, "workspace")
	if out, err := u.Command("ln", "-s", rootDir, ws).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	out, code := u.ds01("container", "deploy", project)
	if code == 0 || !strings.Contains(out, "a symbolic link") {
		t.Errorf("deploy with ~/workspace a link to root's directory: exit %d:\n%s", code, out)
	}
	if ents, _ := os.ReadDir(rootDir); len(ents) != 0 {
		t.Errorf("ds01 made %v in root's directory", ents)
	}
	if _, err := d.ContainerInspect(context.Background(), u.container(project), client.ContainerInspectOptions{}); err == nil {
		t.Errorf("a refused deploy left container %s", u.container(project))
	}

	os.Remove(ws)
	// Directories the user names: not theirs, or not even readable.
	secret := t.TempDir()
	os.Chmod(filepath.Dir(secret), 0o755)
	os.Chmod(secret, 0o700)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workspace", "/etc"}, "--workspace /etc: not yours"},
		{[]string{"--workspace", "/"}, "--workspace /: not yours"},
		{[]string{"--data", "/etc"}, "--data /etc: not yours"},
		{[]string{"--models", filepath.Join(u.Home, "..")}, "not yours"},
		{[]string{"--data", secret}, "permission denied (ds01 binds only a directory you may read yourself)"},
	} {
		out, code := u.ds01(append([]string{"container", "deploy", project}, tc.args...)...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("deploy %v: exit %d, want 1 and %q:\n%s", tc.args, code, tc.want, out)
		}
	}
	if _, err := d.ContainerInspect(context.Background(), u.container(project), client.ContainerInspectOptions{}); err == nil {
		t.Fatalf("a refused deploy left container %s", u.container(project))
	}

	if _, err := os.Lstat(ws); err == nil {
		t.Errorf("refused deploys left %s", ws)
	}

	// A missing ~/workspace is made as the user, not root:root.
	out, code = u.ds01("container", "deploy", project)
	if code != 0 {
		t.Fatalf("deploy: exit %d:\n%s", code, out)
	}
	for _, p := range []string{ws, filepath.Join(ws, project)} {
		if got := ownerOf(t, p); got != u.UID {
			t.Errorf("%s owned by %d, want the user", p, got)
		}
	}

	// Finding 6: the container has its own IPC namespace and a /dev/shm
	// of half the host's memory.
	ins, err := d.ContainerInspect(context.Background(), u.container(project), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := ins.Container.HostConfig
	if hc.IpcMode != "private" || hc.ShmSize != deploy.DefaultShmSize() {
		t.Errorf("IPC %q, shm %d; want private and %d", hc.IpcMode, hc.ShmSize, deploy.DefaultShmSize())
	}
	for _, c := range []string{"MKNOD", "SETFCAP"} {
		if !strings.Contains(strings.Join(hc.CapDrop, ","), c) {
			t.Errorf("CAP_%s kept: CapDrop %v", c, hc.CapDrop)
		}
	}
}

// Finding 7: root in the container leaves a setuid shell and tries a
// device node in /workspace; on a nosuid,nodev home neither works on the
// host, and on a home that honours setuid the deploy is refused.
func TestSudoSetuidEscape(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "setuid")

	u := newSudoer(t, testbed.HomesDir(t, testbed.HardenedHomes))
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, u.tag(project))
	u.createAs(base, project)
	removeContainer(t, d, u.container(project))
	out, code := u.ds01("container", "deploy", project, "--start", "--memlock", "8m")
	if code != 0 {
		t.Fatalf("deploy on a nosuid,nodev home: exit %d:\n%s", code, out)
	}
	r, err := d.Exec(ctx, u.container(project), "0:0", "sh", "-c", "cp /bin/bash /workspace/sh && chmod 4755 /workspace/sh && ls -l /workspace/sh; mknod /workspace/disk b 254 0 && echo mknod=ok")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Stdout, "-rwsr-xr-x") || strings.Contains(r.Stdout, "mknod=ok") {
		t.Errorf("inside, as root: want a setuid copy of bash and mknod refused (CAP_MKNOD dropped):\n%s\n%s", r.Stdout, r.Stderr)
	}
	sh := filepath.Join(u.Home, "workspace", project, "sh")
	if ownerOf(t, sh) != 0 {
		t.Fatalf("%s is not root's on the host", sh)
	}
	euid, _, err := u.Run(t, nil, sh, "-p", "-c", "id -u")
	if err != nil || strings.TrimSpace(euid) != strconv.FormatUint(uint64(u.UID), 10) {
		t.Errorf("the setuid shell run by its host path gave euid %q (%v), want the user's %d", euid, err, u.UID)
	}

	// A home on the root filesystem, which honours setuid bits.
	p := newSudoer(t, testbed.HomesDir(t, testbed.PlainHomes))
	project2 := testbed.Prefix(t)
	testbed.RemoveImage(t, d, p.tag(project2))
	p.createAs(base, project2)
	removeContainer(t, d, p.container(project2))
	out, code = p.ds01("container", "deploy", project2, "--start", "--memlock", "8m")
	if code == 0 || !strings.Contains(out, "the setuid rule") || !strings.Contains(out, "nosuid,nodev") {
		t.Fatalf("deploy on a home that honours setuid: exit %d, want the setuid rule:\n%s", code, out)
	}
	if _, err := d.ContainerInspect(ctx, p.container(project2), client.ContainerInspectOptions{}); err == nil {
		t.Errorf("the refused deploy left container %s", p.container(project2))
	}
	if _, err := os.Stat(filepath.Join(p.Home, "workspace", project2)); err == nil {
		t.Errorf("the refused deploy left its workspace directory")
	}
}

// The user's host groups (an LDAP project group, say) come along: in the
// image's /etc/group and in the container's groups, by name and GID.
func TestSudoHostGroups(t *testing.T) {
	d := testbed.Docker(t)
	group, gid := testbed.NewGroup(t)
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	bin := testbed.Binary(t)
	u := sudoer{User: testbed.NewUser(t, homes, group), t: t, bin: bin}
	u.AllowSudo(t, bin)
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "groups")
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, u.tag(project))
	u.createAs(base, project)
	removeContainer(t, d, u.container(project))
	if out, code := u.ds01("container", "deploy", project, "--start", "--memlock", "8m"); code != 0 {
		t.Fatalf("deploy: exit %d:\n%s", code, out)
	}
	ids := strconv.FormatUint(uint64(u.UID), 10) + ":" + strconv.FormatUint(uint64(u.GID), 10)
	r, err := d.Exec(context.Background(), u.container(project), ids, "sh", "-c", "id -G; id -Gn")
	if err != nil {
		t.Fatal(err)
	}
	gids, names, _ := strings.Cut(r.Stdout, "\n")
	if !strings.Contains(" "+gids+" ", " "+strconv.FormatUint(uint64(gid), 10)+" ") || !strings.Contains(names, group) {
		t.Errorf("inside: id -G %q, id -Gn %q; want GID %d (%s) among them", gids, names, gid, group)
	}
	r, err = d.Run(context.Background(), u.tag(project), "", "sh", "-c", "id -Gn")
	if err != nil || !strings.Contains(r.Stdout, group) {
		t.Errorf("a plain container of the image: id -Gn %q, %v; want %s", r.Stdout, err, group)
	}

	// The group's shared directory holds another member's private files:
	// root in the container would read them, so it is not bound through
	// sudo, writable by the user as it is.
	shared := filepath.Join(homes, "shared")
	os.Mkdir(shared, 0o2770)
	os.Chown(shared, 0, int(gid))
	os.Chmod(shared, 0o2770)
	out, code := u.ds01("container", "deploy", testbed.Prefix(t), "--image", u.tag(project), "--data", shared)
	if code != 1 || !strings.Contains(out, "not yours") {
		t.Errorf("--data of the group's shared directory: exit %d, want a refusal:\n%s", code, out)
	}
}

// The attack a path check alone cannot stop: after the deploy, the user
// swaps ~/workspace/NAME for a link to /. Docker resolves bind sources at
// every start, as root; ds01 hands it a pin of the checked directory
// instead, and makes the pin again only for that same directory.
func TestSudoWorkspaceSwappedAfterDeploy(t *testing.T) {
	d := testbed.Docker(t)
	ctx := context.Background()
	u := newSudoer(t, testbed.HomesDir(t, testbed.HardenedHomes))
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "swap")
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, u.tag(project))
	u.createAs(base, project)
	cname := u.container(project)
	removeContainer(t, d, cname)
	t.Cleanup(func() { binds.Unpin(cname) })
	if out, code := u.ds01("container", "deploy", project, "--memlock", "8m"); code != 0 {
		t.Fatalf("deploy: exit %d:\n%s", code, out)
	}
	ws := filepath.Join(u.Home, "workspace", project)
	if out, err := u.Command("sh", "-c", "echo mine > "+ws+"/marker && mv "+ws+" "+ws+".old && ln -s / "+ws).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	ins, err := d.ContainerInspect(ctx, cname, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ins.Container.HostConfig.Mounts {
		if m.Target == "/workspace" && !strings.HasPrefix(m.Source, binds.PinRoot+"/") {
			t.Errorf("/workspace is bound from %s, a path the user can swap", m.Source)
		}
	}
	// Docker itself starts it (no reboot since): the pin, not the link.
	if _, err := d.ContainerStart(ctx, cname, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := d.Exec(ctx, cname, "0:0", "sh", "-c", "ls /workspace")
	if err != nil || strings.TrimSpace(r.Stdout) != "marker" {
		t.Errorf("/workspace after the swap holds %q (%v), want the checked directory's marker", r.Stdout, err)
	}
	d.ContainerStop(ctx, cname, client.ContainerStopOptions{})

	// After a reboot the pins are gone: Docker alone cannot start it, and
	// ds01 will not pin the link.
	if err := binds.Unpin(cname); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ContainerStart(ctx, cname, client.ContainerStartOptions{}); err == nil {
		d.ContainerStop(ctx, cname, client.ContainerStopOptions{})
		t.Error("Docker started the container with its pin gone")
	}
	c := u.Command("sudo", "-n", u.bin, "container", "open", project)
	c.Stdin = strings.NewReader("ls /workspace\n")
	out, _ := c.CombinedOutput()
	if !strings.Contains(string(out), "retire the container and deploy it again") || strings.Contains(string(out), "boot") {
		t.Errorf("container open after the swap:\n%s", out)
	}
	// The user puts the directory back: open pins it again and works.
	if out, err := u.Command("sh", "-c", "rm "+ws+" && mv "+ws+".old "+ws).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	c = u.Command("sudo", "-n", u.bin, "container", "open", project)
	c.Stdin = strings.NewReader("ls /workspace\n")
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "marker") {
		t.Errorf("container open with the directory back: %v\n%s", err, out)
	}
	if out, code := u.ds01("container", "retire", project); code != 0 {
		t.Fatalf("retire: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(binds.PinRoot, cname)); err == nil {
		t.Errorf("retire left the pins of %s", cname)
	}
}

// Another user's image is no base and no image to deploy for a user
// through sudo: root in a container of it reads what its owner saved.
func TestSudoOtherUsersImage(t *testing.T) {
	d := testbed.Docker(t)
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	victim, thief := newSudoer(t, homes), newSudoer(t, homes)
	base := loadBase(t, d, testbed.Base(t, testbed.Bullseye), "steal")
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, victim.tag(project))
	victim.createAs(base, project)
	// The same image under a name that hides its owner.
	alias := testbed.Prefix(t) + "/innocent:latest"
	if _, err := d.ImageTag(context.Background(), client.ImageTagOptions{Source: victim.tag(project), Target: alias}); err != nil {
		t.Fatal(err)
	}
	testbed.RemoveImage(t, d, alias)
	for _, args := range [][]string{
		{"container", "deploy", "steal", "--image", victim.tag(project), "--force"},
		{"container", "deploy", "steal", "--image", alias, "--force"},
		{"image", "create", "steal", "--base", victim.tag(project)},
		{"image", "create", "steal", "--base", alias},
	} {
		out, code := thief.ds01(args...)
		if code != 1 || !strings.Contains(out, "another user's image") {
			t.Errorf("%v: exit %d, want a refusal naming another user's image:\n%s", args, code, out)
		}
	}
	if _, err := d.ImageInspect(context.Background(), thief.tag("steal")); err == nil {
		testbed.RemoveImage(t, d, thief.tag("steal"))
		t.Errorf("the refusals left %s", thief.tag("steal"))
	}
	if _, err := d.ContainerInspect(context.Background(), thief.container("steal"), client.ContainerInspectOptions{}); err == nil {
		removeContainer(t, d, thief.container("steal"))
		t.Errorf("the refusals left container %s", thief.container("steal"))
	}
}
