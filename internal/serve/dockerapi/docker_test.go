package dockerapi

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/internal/serve/audit"
	"github.com/ds01/ds01/internal/serve/peer"
	"github.com/ds01/ds01/internal/testbed"
)

const dockerSock = "/var/run/docker.sock"

// bed is one proxy on a temporary socket, its audit log, and two users
// with a running container each, made as root with the label the
// service's create would write.
type bed struct {
	sock, auditLog, image string
	alice, bob            testbed.User
	aliceC, bobC          string // container names
}

func newBed(t *testing.T) *bed {
	t.Helper()
	testbed.NeedRoot(t)
	testbed.Docker(t)
	b := &bed{}
	prefix := testbed.Prefix(t)
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	b.alice, b.bob = testbed.NewUser(t, homes), testbed.NewUser(t, homes)
	b.image = toolImage(t, prefix)
	b.aliceC = runContainer(t, prefix+"-alice", b.image, b.alice, "serve")
	b.bobC = runContainer(t, prefix+"-bob", b.image, b.bob, "serve")
	dir, err := os.MkdirTemp("/tmp", "ds01test-sock-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	b.sock, b.auditLog = filepath.Join(dir, "ds01.sock"), filepath.Join(t.TempDir(), "audit.log")
	log, err := audit.Open(b.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	l, err := peer.Listen(b.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: New(dockerSock, log), ConnContext: peer.ConnContext}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); log.Close() })
	return b
}

// toolImage is an image of one static binary (testdata/tool), imported
// as root.
func toolImage(t *testing.T, prefix string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tool")
	build := exec.Command("go", "build", "-o", bin, "./testdata/tool")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test tool: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "bin/", Mode: 0o755, Typeflag: tar.TypeDir})
	tw.WriteHeader(&tar.Header{Name: "tmp/", Mode: 0o1777, Typeflag: tar.TypeDir})
	tw.WriteHeader(&tar.Header{Name: "bin/tool", Mode: 0o755, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	tag := prefix + "/tool:latest"
	imp := exec.Command("docker", "import", "--change", `ENTRYPOINT ["/bin/tool"]`, "-", tag)
	imp.Stdin = &tb
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	return tag
}

// runContainer makes and starts, as root, a container for u labelled as
// ds01's create labels it, running as u.
func runContainer(t *testing.T, name, image string, u testbed.User, args ...string) string {
	t.Helper()
	create := []string{"create", "--name", name, "--label", fmt.Sprintf("ds01.user_id=%d", u.UID),
		"--user", fmt.Sprintf("%d:%d", u.UID, u.GID), "-i"}
	if args[0] == "repl" {
		create = append(create, "-t")
	}
	create = append(append(create, image), args...)
	if out, err := exec.Command("docker", create...).CombinedOutput(); err != nil {
		t.Fatalf("docker create: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	if out, err := exec.Command("docker", "start", name).CombinedOutput(); err != nil {
		t.Fatalf("docker start: %v\n%s", err, out)
	}
	return name
}

// docker runs the docker CLI as u against the proxy, with a deadline.
func (b *bed) docker(t *testing.T, u testbed.User, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := u.Command("docker", args...)
	c.Env = append(c.Env, "DOCKER_HOST=unix://"+b.sock)
	var o, e bytes.Buffer
	c.Stdout, c.Stderr, c.Stdin = &o, &e, strings.NewReader(stdin)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return o.String(), e.String(), err
	case <-ctx.Done():
		c.Process.Kill()
		<-done
		t.Fatalf("docker %s as %s hung\nstdout: %s\nstderr: %s", strings.Join(args, " "), u.Login, o.String(), e.String())
		return "", "", nil
	}
}

// auditLines are the audit log's entries.
func (b *bed) auditLines(t *testing.T) []map[string]any {
	t.Helper()
	f, err := os.Open(b.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// refusedLine reports whether the audit log has a refusal of uid by rule
// (on target, when given).
func (b *bed) refusedLine(t *testing.T, uid uint32, rule, target string) bool {
	for _, m := range b.auditLines(t) {
		if m["decision"] == audit.Refuse && m["rule"] == rule && m["uid"] == float64(uid) && (target == "" || m["target"] == target) {
			return true
		}
	}
	return false
}

func TestUsersCannotReachDocker(t *testing.T) {
	b := newBed(t)
	for _, u := range []testbed.User{b.alice, b.bob} {
		_, stderr, err := u.Run(t, nil, "docker", "-H", "unix://"+dockerSock, "ps")
		if err == nil || !strings.Contains(stderr, "permission denied") {
			t.Errorf("%s reached the Docker socket itself: %v %s", u.Login, err, stderr)
		}
	}
}

func TestOwnContainersOnly(t *testing.T) {
	b := newBed(t)
	out, stderr, err := b.docker(t, b.alice, "", "ps", "-a", "--format", "{{.Names}}")
	if err != nil {
		t.Fatalf("docker ps: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, b.aliceC) || strings.Contains(out, b.bobC) {
		t.Errorf("alice's docker ps shows %q; want %s and not %s", out, b.aliceC, b.bobC)
	}
	// A filter for bob's label still shows nothing of bob's.
	out, _, _ = b.docker(t, b.alice, "", "ps", "-a", "--filter", fmt.Sprintf("label=ds01.user_id=%d", b.bob.UID), "--format", "{{.Names}}")
	if strings.TrimSpace(out) != "" {
		t.Errorf("alice's ps filtered on bob's label shows %q", out)
	}
	// Root passes through and sees both.
	rout, err := exec.Command("docker", "-H", "unix://"+b.sock, "ps", "--format", "{{.Names}}").Output()
	if err != nil || !strings.Contains(string(rout), b.aliceC) || !strings.Contains(string(rout), b.bobC) {
		t.Errorf("root's ps through the socket: %q %v", rout, err)
	}

	refused := []struct {
		args []string
		rule string
	}{
		{[]string{"inspect", b.bobC}, RuleOwnContainers},
		{[]string{"logs", b.bobC}, RuleOwnContainers},
		{[]string{"exec", b.bobC, "/bin/tool", "id"}, RuleOwnContainers},
		{[]string{"stop", b.bobC}, RuleOwnContainers},
		{[]string{"top", b.bobC}, RuleOwnContainers},
		{[]string{"cp", b.bobC + ":/bin/tool", "/tmp/x"}, RuleOwnContainers},
		{[]string{"cp", "/etc/hostname", b.aliceC + ":/tmp/"}, RuleCopyIn},
		{[]string{"exec", "-u", "0", b.aliceC, "/bin/tool", "id"}, RuleExecUser},
		{[]string{"exec", "-u", "root", b.aliceC, "/bin/tool", "id"}, RuleExecUser},
		{[]string{"exec", "--privileged", b.aliceC, "/bin/tool", "id"}, RuleExecPriv},
		{[]string{"run", "--rm", b.image, "id"}, RuleCreate},
		{[]string{"create", b.image}, RuleCreate},
		{[]string{"rm", "-f", b.aliceC}, RuleRetire},
		{[]string{"rename", b.aliceC, "x"}, RuleNames},
		{[]string{"commit", b.aliceC}, RuleImages},
		{[]string{"pull", "debian:bookworm"}, RulePull},
		{[]string{"volume", "ls"}, RuleShared},
		{[]string{"network", "ls"}, RuleShared},
		{[]string{"system", "df"}, RuleHost},
		{[]string{"swarm", "init"}, RuleHost},
	}
	for _, tt := range refused {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, err := b.docker(t, b.alice, "", tt.args...)
			if err == nil {
				t.Fatalf("docker %v as alice succeeded", tt.args)
			}
			if !strings.Contains(stderr, fmt.Sprintf("rule %q", tt.rule)) {
				t.Errorf("stderr %q does not name rule %q", stderr, tt.rule)
			}
			if !b.refusedLine(t, b.alice.UID, tt.rule, "") {
				t.Errorf("no audit line refusing alice by %s", tt.rule)
			}
		})
	}
	if !b.refusedLine(t, b.alice.UID, RuleOwnContainers, b.bobC) {
		t.Errorf("no audit line names bob's container as the target")
	}
	// bob's container was not stopped by any of it.
	st, _ := exec.Command("docker", "inspect", "-f", "{{.State.Running}}", b.bobC).Output()
	if strings.TrimSpace(string(st)) != "true" {
		t.Errorf("bob's container is not running after alice's attempts: %q", st)
	}
}

func TestDockerBuildRefused(t *testing.T) {
	b := newBed(t)
	ctxDir := filepath.Join(b.alice.Home, "ctx")
	b.alice.Run(t, nil, "mkdir", ctxDir)
	b.alice.Run(t, nil, "sh", "-c", "echo 'FROM "+b.image+"' > "+ctxDir+"/Dockerfile")
	// The CLI's default (BuildKit, with buildx where installed) and the
	// legacy builder.
	for _, env := range []string{"DS01_DEFAULT_BUILDER=1", "DOCKER_BUILDKIT=0"} {
		_, stderr, err := b.alice.Run(t, []string{env, "DOCKER_HOST=unix://" + b.sock}, "docker", "build", "-t", "x", ctxDir)
		if err == nil {
			t.Errorf("%s docker build succeeded", env)
			continue
		}
		t.Logf("%s: %s", env, stderr)
		if env == "DOCKER_BUILDKIT=0" && !strings.Contains(stderr, `rule "images-through-ds01"`) {
			t.Errorf("legacy build: %q does not name the rule", stderr)
		}
	}
	if !b.refusedLine(t, b.alice.UID, RuleImages, "") {
		t.Errorf("no audit line refusing the build")
	}
}

func TestOwnContainerWorks(t *testing.T) {
	b := newBed(t)
	a := b.alice
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, stderr, err := b.docker(t, a, stdin, args...)
		if err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	if out := run("", "exec", b.aliceC, "/bin/tool", "id"); out != fmt.Sprintf("uid=%d gid=%d\n", a.UID, a.GID) {
		t.Errorf("exec id: %q", out)
	}
	if out := run("", "exec", "-u", fmt.Sprint(a.UID), b.aliceC, "/bin/tool", "id"); !strings.HasPrefix(out, fmt.Sprintf("uid=%d ", a.UID)) {
		t.Errorf("exec -u UID: %q", out)
	}
	// stdin reaches the process and its end is passed on, and the output
	// comes back whole after it.
	big := strings.Repeat("0123456789abcdef", 1<<14)
	if out := run(big+"\nhello\n", "exec", "-i", b.aliceC, "/bin/tool", "cat"); out != big+"\nhello\n" {
		t.Errorf("exec -i cat gave %d bytes, want %d", len(out), len(big)+7)
	}
	if out := run("", "logs", b.aliceC); out != "ready\n" {
		t.Errorf("logs: %q", out)
	}
	if out := run("", "inspect", "-f", "{{.Config.User}}", b.aliceC); out != fmt.Sprintf("%d:%d\n", a.UID, a.GID) {
		t.Errorf("inspect: %q", out)
	}
	if out := run("", "top", b.aliceC); !strings.Contains(out, "/bin/tool serve") {
		t.Errorf("top: %q", out)
	}
	if out := run("", "stats", "--no-stream", "--format", "{{.Name}}", b.aliceC); !strings.Contains(out, b.aliceC) {
		t.Errorf("stats: %q", out)
	}
	run("", "restart", "-t", "2", b.aliceC)
	run("", "stop", "-t", "2", b.aliceC)
	if out := run("", "wait", b.aliceC); strings.TrimSpace(out) != "0" {
		t.Errorf("wait: %q", out)
	}
	run("", "start", b.aliceC)
	if out := run("", "logs", b.aliceC); out != "ready\nstopping\nready\nstopping\nready\n" {
		t.Errorf("logs after restart, stop, start: %q", out)
	}
	for _, m := range b.auditLines(t) {
		if m["uid"] == float64(a.UID) && m["decision"] != audit.Allow {
			t.Errorf("alice's own work has a %v audit line: %v", m["decision"], m)
		}
	}
}

// docker logs -f streams as the container writes, and ends when it stops.
func TestLogsFollow(t *testing.T) {
	b := newBed(t)
	c := b.alice.Command("docker", "logs", "-f", b.aliceC)
	c.Env = append(c.Env, "DOCKER_HOST=unix://"+b.sock)
	stdout, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("first line %q %v", line, err)
	}
	exec.Command("docker", "stop", "-t", "2", b.aliceC).Run()
	rest := make(chan string, 1)
	go func() {
		var sb bytes.Buffer
		sb.ReadFrom(r)
		rest <- sb.String()
	}()
	select {
	case s := <-rest:
		if s != "stopping\n" {
			t.Errorf("followed %q after the stop", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f did not end when the container stopped")
	}
	c.Wait()
}

// docker exec -it and docker attach on a terminal (tmux), as the user.
func TestInteractive(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux is needed (scripts/setup installs it): %v", err)
	}
	b := newBed(t)
	replC := runContainer(t, b.aliceC+"-repl", b.image, b.alice, "repl")
	for _, tt := range []struct{ name, cmd string }{
		{"exec -it", "docker exec -it " + b.aliceC + " /bin/tool repl"},
		{"attach", "docker attach " + replC},
	} {
		t.Run(tt.name, func(t *testing.T) {
			session := testbed.Prefix(t)
			script := fmt.Sprintf("DOCKER_HOST=unix://%s %s; echo EXIT=$?; sleep 60", b.sock, tt.cmd)
			tmux := testbed.Tmux(t)
			if out, err := tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "30",
				"runuser", "-u", b.alice.Login, "--", "sh", "-c", script).CombinedOutput(); err != nil {
				t.Fatalf("tmux: %v %s", err, out)
			}
			defer tmux("kill-session", "-t", session).Run()
			screen := func() string {
				out, _ := tmux("capture-pane", "-p", "-J", "-t", session).Output()
				return string(out)
			}
			waitFor := func(want string) {
				t.Helper()
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					if strings.Contains(screen(), want) {
						return
					}
				}
				t.Fatalf("the terminal never showed %q:\n%s", want, screen())
			}
			if tt.name == "exec -it" {
				waitFor("repl ready")
			} else {
				time.Sleep(time.Second) // attach shows nothing until the container writes
			}
			tmux("send-keys", "-t", session, "hello there", "Enter").Run()
			waitFor("got HELLO THERE")
			tmux("send-keys", "-t", session, "quit", "Enter").Run()
			waitFor("EXIT=0")
		})
	}
}

// Requests the docker CLI does not make, sent with curl as the user: an
// exec of bob's container started by its ID, a start under an old API
// version with a HostConfig in its body, an exec into a container of
// alice's that runs as root.
func TestCraftedRequests(t *testing.T) {
	b := newBed(t)
	out, err := exec.Command("curl", "-sS", "--unix-socket", dockerSock, "-H", "Content-Type: application/json",
		"-d", `{"Cmd":["/bin/tool","id"],"AttachStdout":true}`, "http://docker/containers/"+b.bobC+"/exec").Output()
	var ex struct{ Id string }
	if err != nil || json.Unmarshal(out, &ex) != nil || ex.Id == "" {
		t.Fatalf("making an exec in bob's container as root: %v %s", err, out)
	}
	rootC := b.aliceC + "-root"
	if out, err := exec.Command("docker", "create", "--name", rootC, "--label", fmt.Sprintf("ds01.user_id=%d", b.alice.UID), b.image, "serve").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", rootC).Run() })
	exec.Command("docker", "start", rootC).Run()
	for _, tt := range []struct {
		name, path, body, rule string
	}{
		{"bob's exec by ID", "/v1.41/exec/" + ex.Id + "/start", `{"Detach":false}`, RuleOwnContainers},
		{"start with a HostConfig", "/v1.20/containers/" + b.aliceC + "/start", `{"Privileged":true,"Binds":["/:/host"]}`, RuleAPIVersion},
		{"exec into a root container", "/v1.41/containers/" + rootC + "/exec", `{"Cmd":["/bin/tool","id"]}`, RuleExecUser},
		{"unlisted route", "/v1.41/containers/" + b.aliceC + "/checkpoints", `{}`, RuleAllowList},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := b.alice.Run(t, nil, "curl", "-sS", "-w", "\n%{http_code}", "--unix-socket", b.sock,
				"-H", "Content-Type: application/json", "-d", tt.body, "http://docker"+tt.path)
			if err != nil {
				t.Fatalf("curl: %v %s", err, stderr)
			}
			i := strings.LastIndexByte(out, '\n')
			body, code := out[:max(i, 0)], out[i+1:]
			var m struct{ Message string }
			if code != "403" || json.Unmarshal([]byte(body), &m) != nil || !strings.Contains(m.Message, fmt.Sprintf("rule %q", tt.rule)) {
				t.Errorf("answer %s %s, want 403 naming %s", code, body, tt.rule)
			}
			if !b.refusedLine(t, b.alice.UID, tt.rule, "") {
				t.Errorf("no audit line for the refusal")
			}
		})
	}
	st, _ := exec.Command("docker", "inspect", "-f", "{{.HostConfig.Privileged}} {{.HostConfig.Binds}}", b.aliceC).Output()
	if strings.TrimSpace(string(st)) != "false []" {
		t.Errorf("alice's container after the crafted start: %s", st)
	}
}

// docker events shows the caller's containers' events only.
func TestEventsFiltered(t *testing.T) {
	b := newBed(t)
	exec.Command("docker", "restart", "-t", "1", b.bobC).Run()
	exec.Command("docker", "restart", "-t", "1", b.aliceC).Run()
	out, stderr, err := b.docker(t, b.alice, "", "events", "--since", "10m", "--until", "0s", "--format", "{{.Actor.Attributes.name}}")
	if err != nil {
		t.Fatalf("docker events: %v %s", err, stderr)
	}
	if !strings.Contains(out, b.aliceC) || strings.Contains(out, b.bobC) {
		t.Errorf("alice's events: %q", out)
	}
}
