package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
)

// The Debian package as scripts/package-deb builds it, installed with
// dpkg into a clean Debian container of the test bed (no systemd, no
// Docker, no network there): what it lays down and with which modes, the
// units, a link for every DS01 command name, the policy as a conffile,
// the socket enabled for the first boot, ds01 running from it; then
// removed (the edited policy stays) and purged (nothing stays).
func TestDebianPackage(t *testing.T) {
	d := testbed.Docker(t)
	version := "0.0.1~test" + randomHex(4)
	deb := buildPackage(t, version)
	next := "0.0.2~test" + randomHex(4)
	upgrade := buildPackage(t, next)
	box := packageBox(t, d)
	box.copyIn(t, deb, "/tmp/ds01.deb")
	t.Log(box.sh(t, "dpkg -i /tmp/ds01.deb 2>&1"))

	t.Run("files", func(t *testing.T) { checkFiles(t, box) })
	t.Run("units", func(t *testing.T) { checkUnits(t, box) })
	t.Run("links", func(t *testing.T) { checkLinks(t, box) })
	t.Run("conffile", func(t *testing.T) { checkConffile(t, box) })
	t.Run("runs", func(t *testing.T) { checkRuns(t, box, version) })
	t.Run("upgrade", func(t *testing.T) { checkUpgrade(t, box, upgrade, next) })
	t.Run("remove and purge", func(t *testing.T) { checkRemove(t, box) })
}

// repoRoot is the module's root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// buildPackage runs scripts/package-deb into a temporary directory.
func buildPackage(t *testing.T, version string) string {
	t.Helper()
	out := t.TempDir()
	c := exec.Command(filepath.Join(repoRoot(t), "scripts", "package-deb"), version)
	c.Env = append(os.Environ(), "DS01_DIST="+out)
	stdout, err := c.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("scripts/package-deb: %v\n%s", err, stderr)
	}
	deb := strings.TrimSpace(string(stdout))
	if want := filepath.Join(out, "ds01_"+version+"_amd64.deb"); deb != want {
		t.Fatalf("scripts/package-deb printed %q, want %q", deb, want)
	}
	return deb
}

// box is a running container of the clean Debian base.
type box struct {
	d  *deploy.Daemon
	id string
}

// packageBox runs a container of the bookworm test base, with no network,
// removed when the test ends.
func packageBox(t *testing.T, d *deploy.Daemon) box {
	t.Helper()
	tag := loadBase(t, d, testbed.Base(t, testbed.Bookworm), "pkg")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       testbed.Prefix(t) + "-pkg",
		Config:     &container.Config{Image: tag, Cmd: []string{"sleep", "infinity"}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.RemoveContainer(c.ID) })
	if _, err := d.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return box{d, c.ID}
}

// copyIn puts the host file src at dst in the container, through the API.
func (b box) copyIn(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: filepath.Base(dst), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.d.CopyToContainer(ctx, b.id, client.CopyToContainerOptions{DestinationPath: filepath.Dir(dst), Content: &buf}); err != nil {
		t.Fatal(err)
	}
}

// run runs a shell script as root in the container: its stdout, stderr
// and exit code.
func (b box) run(t *testing.T, script string) (string, string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := b.d.Exec(ctx, b.id, "0:0", "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	return res.Stdout, res.Stderr, res.ExitCode
}

// sh is run for a script that must succeed.
func (b box) sh(t *testing.T, script string) string {
	t.Helper()
	out, errOut, code := b.run(t, script)
	if code != 0 {
		t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", script, code, out, errOut)
	}
	return out
}

func checkFiles(t *testing.T, b box) {
	for _, tc := range []struct{ path, want string }{
		{"/usr/bin/ds01", "755 root:root regular file"},
		{"/lib/systemd/system/ds01.socket", "644 root:root regular file"},
		{"/lib/systemd/system/ds01.service", "644 root:root regular file"},
		{"/etc/ds01", "755 root:root directory"},
		{"/etc/ds01/policy.toml", "644 root:root regular file"},
		{"/usr/share/doc/ds01/README", "644 root:root regular file"},
	} {
		if got := strings.TrimSpace(b.sh(t, "stat -c '%a %U:%G %F' "+tc.path)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.path, got, tc.want)
		}
	}
	if got := strings.TrimSpace(b.sh(t, "readlink /etc/systemd/system/sockets.target.wants/ds01.socket")); got != "/lib/systemd/system/ds01.socket" {
		t.Errorf("ds01.socket is not enabled for the first boot: sockets.target.wants/ds01.socket -> %q", got)
	}
	// Every file as the package's md5sums have it.
	if out, errOut, code := b.run(t, "dpkg --verify ds01"); code != 0 || out != "" {
		t.Errorf("dpkg --verify ds01: exit %d\n%s%s", code, out, errOut)
	}
}

// checkUnits compares the installed units with the repository's, and
// checks what they must say and must not.
func checkUnits(t *testing.T, b box) {
	for _, tc := range []struct {
		unit      string
		must, not []string
	}{
		{"ds01.socket", []string{"ListenStream=/run/ds01/ds01.sock", "SocketMode=0666", "WantedBy=sockets.target"}, nil},
		{"ds01.service", []string{"ExecStart=/usr/bin/ds01 serve", "Restart=on-failure", "Requires=ds01.socket docker.service", "After=ds01.socket docker.service"},
			// Each would hide the pinned bind sources from dockerd.
			[]string{"PrivateMounts=", "ProtectSystem=", "ProtectHome=", "PrivateTmp=", "MountFlags=", "RuntimeDirectory=", "ReadOnlyPaths=", "TemporaryFileSystem="}},
	} {
		want, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", tc.unit))
		if err != nil {
			t.Fatal(err)
		}
		got := b.sh(t, "cat /lib/systemd/system/"+tc.unit)
		if got != string(want) {
			t.Errorf("%s installed differs from packaging/%s", tc.unit, tc.unit)
		}
		lines := strings.Split(got, "\n")
		for _, m := range tc.must {
			if !slices.Contains(lines, m) {
				t.Errorf("%s lacks the line %q", tc.unit, m)
			}
		}
		for _, l := range lines {
			for _, n := range tc.not {
				if strings.HasPrefix(l, n) {
					t.Errorf("%s sets %q", tc.unit, l)
				}
			}
		}
	}
}

// checkLinks: a link ds01 beside the binary for every DS01 name it
// answers to, and no other.
func checkLinks(t *testing.T, b box) {
	var names []string
	for n := range dashNames {
		names = append(names, n)
	}
	slices.Sort(names)
	out := b.sh(t, `for n in `+strings.Join(names, " ")+`; do echo "$n $(readlink /usr/bin/$n) $(readlink -f /usr/bin/$n)"; done`)
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if want := names[i] + " ds01 /usr/bin/ds01"; l != want {
			t.Errorf("link: %q, want %q", l, want)
		}
	}
	all := strings.Fields(b.sh(t, "cd /usr/bin && find . -maxdepth 1 -lname ds01 -printf '%P\\n' | sort"))
	if !slices.Equal(all, names) {
		t.Errorf("links to ds01 in /usr/bin: %v, want %v", all, names)
	}
}

func checkConffile(t *testing.T, b box) {
	got := strings.Fields(b.sh(t, "dpkg-query -W -f='${Conffiles}' ds01"))
	if len(got) < 2 || got[0] != "/etc/ds01/policy.toml" {
		t.Errorf("conffiles of ds01: %q, want /etc/ds01/policy.toml and its md5", got)
	}
	want, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "policy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if b.sh(t, "cat /etc/ds01/policy.toml") != string(want) {
		t.Error("/etc/ds01/policy.toml differs from packaging/policy.toml")
	}
}

// checkRuns: ds01 version from the package, and every DS01 name's help
// through its link.
func checkRuns(t *testing.T, b box, version string) {
	lines := strings.Split(strings.TrimSpace(b.sh(t, "ds01 version")), "\n")
	want := []string{"ds01 " + version,
		"reaches Docker through direct use of the Docker daemon (no ds01 service at /run/ds01/ds01.sock)",
		"installed by the Debian package ds01: /usr/bin/ds01, "}
	if len(lines) != len(want) {
		t.Fatalf("ds01 version: %q, want %d lines", lines, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("ds01 version line %d: %q, want it to start %q", i+1, lines[i], want[i])
		}
	}
	help := b.sh(t, "image-create --help")
	for _, w := range []string{"assemble ds01-{UID}/PROJECT:latest", "--base REF"} {
		if !strings.Contains(help, w) {
			t.Errorf("image-create --help lacks %q:\n%s", w, help)
		}
	}
	for n := range dashNames {
		if out, errOut, code := b.run(t, n+" --help"); code != 0 || !strings.Contains(out, "USAGE") {
			t.Errorf("%s --help: exit %d\n%s%s", n, code, out, errOut)
		}
	}
}

// checkUpgrade: an upgrade runs the new binary and keeps what the
// administrator chose: the edited policy, and a socket they disabled.
func checkUpgrade(t *testing.T, b box, deb, version string) {
	b.copyIn(t, deb, "/tmp/ds01-next.deb")
	// No systemctl here: its disable is removing the link.
	wants := "/etc/systemd/system/sockets.target.wants/ds01.socket"
	b.sh(t, "echo '# upgrade: kept' >>/etc/ds01/policy.toml && rm "+wants)
	t.Log(b.sh(t, "dpkg -i /tmp/ds01-next.deb 2>&1"))
	if got := b.sh(t, "ds01 version"); !strings.HasPrefix(got, "ds01 "+version+"\n") {
		t.Errorf("after the upgrade ds01 version says %q, want %s", got, version)
	}
	if !strings.Contains(b.sh(t, "cat /etc/ds01/policy.toml"), "# upgrade: kept") {
		t.Error("the upgrade replaced the edited policy")
	}
	if _, _, code := b.run(t, "[ -L "+wants+" ]"); code == 0 {
		t.Error("the upgrade enabled the socket the administrator had disabled")
	}
	b.sh(t, "ln -s /lib/systemd/system/ds01.socket "+wants)
}

// checkRemove: a remove leaves the administrator's edited policy, a
// purge leaves nothing, the enablement included.
func checkRemove(t *testing.T, b box) {
	b.sh(t, "echo '# an administrator was here' >>/etc/ds01/policy.toml && dpkg -r ds01 >/dev/null")
	gone := "/usr/bin/ds01 /usr/bin/image-create /lib/systemd/system/ds01.socket /lib/systemd/system/ds01.service /usr/share/doc/ds01/README"
	if out := b.sh(t, "for f in "+gone+"; do [ -e $f ] || [ -L $f ] && echo $f; done; true"); out != "" {
		t.Errorf("left after dpkg -r: %s", out)
	}
	if !strings.Contains(b.sh(t, "cat /etc/ds01/policy.toml"), "# an administrator was here") {
		t.Error("dpkg -r lost the edited policy")
	}
	b.sh(t, "dpkg -P ds01 >/dev/null")
	left := "/etc/ds01/policy.toml /etc/ds01 /etc/systemd/system/sockets.target.wants/ds01.socket /etc/systemd/system/ds01.socket"
	if out := b.sh(t, "for f in "+left+"; do [ -e $f ] || [ -L $f ] && echo $f; done; true"); out != "" {
		t.Errorf("left after dpkg -P: %s", out)
	}
	if _, _, code := b.run(t, "dpkg-query -W ds01"); code == 0 {
		t.Error("dpkg still knows ds01 after a purge")
	}
}

// ds01 version names the package only when dpkg lists the running binary.
func TestInstalledLine(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	old := dpkgList
	t.Cleanup(func() { dpkgList = old })
	for _, tc := range []struct {
		name, list string
		want       bool
	}{
		{"listed", "/.\n/usr\n" + exe + "\n/etc/ds01/policy.toml\n", true},
		{"another binary", "/usr/bin/ds01x\n" + exe + "x\n", false},
		{"a prefix only", filepath.Dir(exe) + "\n", false},
		{"no list", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dpkgList = filepath.Join(t.TempDir(), "ds01.list")
			if tc.list != "" {
				if err := os.WriteFile(dpkgList, []byte(tc.list), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := installedLine()
			if tc.want != (got != "") || tc.want && !strings.Contains(got, exe) {
				t.Errorf("installedLine() = %q, want a line naming %s: %v", got, exe, tc.want)
			}
		})
	}
}
