package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/internal/testbed"
)

// socketDir is a directory every test user can reach, as /run/ds01 is.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ds01test-sock-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// whoami serves, on l, the peer each request came from.
func whoami(t *testing.T, l net.Listener) {
	t.Helper()
	srv := &http.Server{
		ConnContext: ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := FromContext(r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
			json.NewEncoder(w).Encode(p)
		}),
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// Real users connect with curl and the server sees their own UID, GID,
// login, home and groups, whatever they claim in the request.
func TestPeerIsTheKernelsWord(t *testing.T) {
	testbed.NeedRoot(t)
	homes := testbed.HomesDir(t, testbed.HardenedHomes)
	group, gid := testbed.NewGroup(t)
	alice, bob := testbed.NewUser(t, homes, group), testbed.NewUser(t, homes)
	sock := filepath.Join(socketDir(t), "ds01.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	whoami(t, l)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	for _, u := range []testbed.User{alice, bob} {
		out, stderr, err := u.Run(t, nil, "curl", "-sS", "--unix-socket", sock,
			"-H", "X-Ds01-Uid: 0", "-H", "X-Forwarded-User: root", "http://ds01/?uid=0")
		if err != nil {
			t.Fatalf("curl as %s: %v\n%s", u.Login, err, stderr)
		}
		var p Peer
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("%v: %q", err, out)
		}
		if p.UID != u.UID || p.GID != u.GID || p.Login != u.Login || p.Home != u.Home || !p.Known {
			t.Errorf("%s (%d:%d, %s) seen as %+v", u.Login, u.UID, u.GID, u.Home, p)
		}
		if p.PID <= 0 || int(p.PID) == os.Getpid() {
			t.Errorf("%s: PID %d is not curl's", u.Login, p.PID)
		}
		inGroup := false
		for _, g := range p.Groups {
			inGroup = inGroup || (g.GID == gid && g.Name == group)
		}
		if inGroup != (u.Login == alice.Login) {
			t.Errorf("%s: groups %+v, want %s (%d) only for %s", u.Login, p.Groups, group, gid, alice.Login)
		}
	}
	// Root in this process: its own PID.
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://ds01/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Peer
	json.NewDecoder(resp.Body).Decode(&p)
	if p.UID != 0 || !p.Root() || int(p.PID) != os.Getpid() || p.Login != "root" {
		t.Errorf("root seen as %+v", p)
	}
}

func TestListenRefuses(t *testing.T) {
	testbed.NeedRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  string // "" for success
	}{
		{"missing parent made 0755", func(t *testing.T, path string) {}, ""},
		{"regular file", func(t *testing.T, path string) {
			os.MkdirAll(filepath.Dir(path), 0o755)
			os.WriteFile(path, []byte("keep"), 0o644)
		}, "is not a socket"},
		{"symlink", func(t *testing.T, path string) {
			os.MkdirAll(filepath.Dir(path), 0o755)
			os.Symlink("/etc/passwd", path)
		}, "is not a socket"},
		{"stale socket", func(t *testing.T, path string) {
			os.MkdirAll(filepath.Dir(path), 0o755)
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
		}, ""},
		{"live socket", func(t *testing.T, path string) {
			os.MkdirAll(filepath.Dir(path), 0o755)
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, "another service answers"},
		{"parent others may write", func(t *testing.T, path string) {
			os.MkdirAll(filepath.Dir(path), 0o755)
			os.Chmod(filepath.Dir(path), 0o777)
		}, "only the service's own user may write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(socketDir(t), "run", "ds01.sock")
			tt.setup(t, path)
			before, _ := os.ReadFile(path)
			l, err := Listen(path)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				l.Close()
				if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o755 {
					t.Errorf("parent mode %v", fi.Mode().Perm())
				}
				return
			}
			if err == nil {
				l.Close()
				t.Fatalf("Listen succeeded, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Errorf("the existing file was changed")
			}
		})
	}
}

// The test binary runs itself as a socket-activated service: the socket
// is made here and passed as descriptor 3, as systemd does.
func TestFromSystemd(t *testing.T) {
	if os.Getenv("DS01_PEER_TEST_ACTIVATED") == "1" {
		activatedChild()
		return
	}
	sock := filepath.Join(socketDir(t), "ds01.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFromSystemd$")
	cmd.Env = append(os.Environ(), "DS01_PEER_TEST_ACTIVATED=1", "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{f}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c := http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://ds01/")
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%v\n%s", err, out)
	}
	var p Peer
	json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("activated child: %v\n%s", err, out)
	}
	if int(p.PID) != os.Getpid() || p.UID != uint32(os.Getuid()) {
		t.Errorf("activated service saw %+v, want PID %d", p, os.Getpid())
	}
}

// activatedChild serves one request on the socket systemd (the parent
// test) passed. LISTEN_PID must name this process, which only it knows.
func activatedChild() {
	os.Setenv("LISTEN_PID", fmt.Sprint(os.Getpid()))
	l, ok, err := FromSystemd()
	if err != nil || !ok {
		fmt.Println("FromSystemd:", ok, err)
		os.Exit(1)
	}
	if os.Getenv("LISTEN_FDS") != "" {
		fmt.Println("LISTEN_FDS left for children")
		os.Exit(1)
	}
	c, err := l.Accept()
	if err != nil {
		os.Exit(1)
	}
	b := make([]byte, 4096)
	c.Read(b)
	body, _ := json.Marshal(Resolve(c.(*Conn).Cred))
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	c.Close()
	os.Exit(0)
}

func TestNotThroughListener(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx := ConnContext(t.Context(), a)
	if _, err := FromContext(ctx); err != ErrNoPeer {
		t.Errorf("FromContext without a peer: %v", err)
	}
}
