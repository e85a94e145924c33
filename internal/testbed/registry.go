package testbed

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Registry is a running CNCF distribution registry (Debian's
// docker-registry package) on a loopback port, or another local address.
type Registry struct {
	Host string // 127.0.0.1:port, or ip:port
	Dir  string // its storage
	cmd  *exec.Cmd
}

// StartRegistry starts a registry that lives until the test ends.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := StartRegistryIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// StartRegistryOn starts a registry on ip, a local address (the machine
// daemon's bridge gateway, say, which the containerd engines reach), that
// lives until the test ends.
func StartRegistryOn(t testing.TB, ip string) *Registry {
	t.Helper()
	r, err := startRegistry(t.TempDir(), ip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// StartRegistryIn starts a registry keeping its storage and config in dir;
// the caller stops it.
func StartRegistryIn(dir string) (*Registry, error) { return startRegistry(dir, "127.0.0.1") }

func startRegistry(dir, ip string) (*Registry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry is not installed (apt-get install docker-registry; scripts/setup does): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	host := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting docker-registry: %w", err)
	}
	r := &Registry{Host: host, Dir: filepath.Join(dir, "data"), cmd: cmd}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			r.Stop()
			log, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			return nil, fmt.Errorf("docker-registry did not answer on %s: %v\n%s", host, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the registry; its storage stays until the test ends.
func (r *Registry) Stop() {
	if r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}
