package testbed

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"
)

// AssertUserInside runs a login shell in a container of tag as the image's
// own user and checks, from inside, what a DS01 user relies on: the
// account, home, PATH, sudo, empty lastlog/faillog, the base's users, and
// the base's modes on /home, /var/log and /etc (files holds the base's).
func AssertUserInside(t *testing.T, d *deploy.Daemon, tag string, files *layers.Files, acct passwd.Account) {
	t.Helper()
	AssertUser(t, func(ctx context.Context, script string) (engine.RunResult, error) {
		return d.Run(ctx, tag, "", "bash", "-lc", script)
	}, files, acct)
}

// AssertUser makes the checks of AssertUserInside through run, which runs
// a bash script as the user somewhere: a new container of an image, or an
// exec in a running one.
func AssertUser(t *testing.T, run func(ctx context.Context, script string) (engine.RunResult, error), files *layers.Files, acct passwd.Account) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// One line per check, "key=value", from a login shell as the
	// image's own user (the config's numeric UID:GID).
	script := `
echo "user=$(id -un)"
echo "ids=$(id -u):$(id -g)"
echo "groups=$(id -Gn)"
echo "home=$HOME"
echo "path1=${PATH%%:*}"
sudo -n true && echo "sudo=ok"
echo "sudo_root=$(sudo -n id -u)"
echo "logs=$(stat -c %s /var/log/lastlog /var/log/faillog | tr '\n' ' ')"
echo "modes=$(stat -c %a /home /var/log /etc | tr '\n' ' ')"
echo "users=$(getent passwd | cut -d: -f1 | tr '\n' ' ')"
echo "pwd=$(pwd)"
touch /workspace/probe && echo "workspace=writable"
touch ~/.local/bin/probe && echo "local=writable"
`
	out, err := run(ctx, script)
	if err != nil {
		t.Fatal(err)
	}
	if out.ExitCode != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", out.ExitCode, out.Stdout, out.Stderr)
	}
	if strings.Contains(out.Stderr, "sudo:") {
		t.Errorf("sudo complained inside the container: %s", out.Stderr)
	}
	got := map[string]string{}
	for _, l := range strings.Split(out.Stdout, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = strings.TrimSpace(v)
		}
	}
	mode := func(p string) string {
		f, ok := files.Get(p)
		if !ok {
			t.Fatalf("base has no /%s", p)
		}
		return fmt.Sprintf("%o", f.Header.Mode&0o7777)
	}
	want := map[string]string{
		"user":      acct.Name,
		"ids":       fmt.Sprintf("%d:%d", acct.UID, acct.GID),
		"home":      "/home/" + acct.Name,
		"path1":     "/home/" + acct.Name + "/.local/bin",
		"sudo":      "ok",
		"sudo_root": "0",
		"logs":      "0 0",
		"modes":     mode("home") + " " + mode("var/log") + " " + mode("etc"),
		"pwd":       "/workspace",
		"workspace": "writable",
		"local":     "writable",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q; want %q\nstdout:\n%s\nstderr:\n%s", k, got[k], v, out.Stdout, out.Stderr)
		}
	}
	for _, g := range acct.Groups {
		if !strings.Contains(" "+got["groups"]+" ", " "+g+" ") {
			t.Errorf("groups = %q; want %s among them", got["groups"], g)
		}
	}
	// The base's accounts are all still there, and the user once.
	db, ok := files.Get("etc/passwd")
	if !ok {
		t.Fatal("base has no /etc/passwd")
	}
	users := strings.Fields(got["users"])
	for _, l := range strings.Split(strings.TrimSpace(string(db.Data)), "\n") {
		u, _, _ := strings.Cut(l, ":")
		if !strings.Contains(" "+got["users"]+" ", " "+u+" ") {
			t.Errorf("base user %q is gone; users: %v", u, users)
		}
	}
	if n := strings.Count(" "+got["users"]+" ", " "+acct.Name+" "); n != 1 {
		t.Errorf("%s appears %d times in passwd", acct.Name, n)
	}
}
