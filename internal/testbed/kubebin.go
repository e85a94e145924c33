package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// kubeVersion is the Kubernetes release whose API server and scheduler
	// the test bed runs; the client-go of the main module is its v0.x twin.
	kubeVersion = "v1.37.2"
	// kwokVersion is the kwok release that plays the nodes and kubelets.
	kwokVersion = "v0.8.0"
)

// kubeBinaries is the directory holding kube-apiserver and kube-scheduler,
// built once per machine from the nested module internal/testbed/kubebuild
// (k8s.io/kubernetes from the module proxy, its staging modules pinned).
func kubeBinaries(t testing.TB) string {
	t.Helper()
	return cachedBuild(t, "kube-"+kubeVersion, "kube-apiserver and kube-scheduler "+kubeVersion,
		[]string{"kube-apiserver", "kube-scheduler"}, buildKube)
}

var kwokFiles = []string{"kwok", "stages.yaml", "clusterexecs.crd.yaml"}

// kwokBinary is the directory holding kwok, the stages it plays
// (stages.yaml: the standalone binary has none built in) and the
// definition of its ClusterExec resource.
func kwokBinary(t testing.TB) string {
	t.Helper()
	return cachedBuild(t, "kwok-"+kwokVersion, "kwok "+kwokVersion,
		kwokFiles, buildKwok)
}

// cachedBuild returns $DS01_TESTBED_CACHE/name, running build into a
// temporary directory renamed to that name when it lacks one of files (a
// cache an older test bed made holds fewer). The build runs under a file
// lock: test packages run in parallel, and the second waits for the
// first's build instead of doing it again.
func cachedBuild(t testing.TB, name, what string, files []string, build func(ctx context.Context, out string) error) string {
	t.Helper()
	dir, err := buildCached(name, what, files, build, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func buildCached(name, what string, files []string, build func(ctx context.Context, out string) error, logf func(string, ...any)) (string, error) {
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	final := filepath.Join(cache, name)
	if hasFiles(final, files) {
		return final, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(final + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if hasFiles(final, files) {
		return final, nil
	}
	// Under the lock, a partial build is one whose process ended first.
	stale, _ := filepath.Glob(final + ".partial-*")
	for _, p := range stale {
		os.RemoveAll(p)
	}
	tmp, err := os.MkdirTemp(cache, name+".partial-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	logf("building %s into %s (once per machine, several minutes)", what, final)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	if err := build(ctx, tmp); err != nil {
		return "", fmt.Errorf("building %s: %w", what, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.RemoveAll(final); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	logf("built %s in %s", what, time.Since(start).Round(time.Second))
	return final, nil
}

// PrebuildKube builds the control plane's binaries when the cache lacks
// them, for a test package to start in the background at its start: the
// build (minutes, once per machine) then overlaps tests that wait on
// Docker rather than the CPU. A failure is left to StartKube to report.
func PrebuildKube() {
	nolog := func(string, ...any) {}
	buildCached("kube-"+kubeVersion, "", []string{"kube-apiserver", "kube-scheduler"}, buildKube, nolog)
	buildCached("kwok-"+kwokVersion, "", kwokFiles, buildKwok, nolog)
}

func hasFiles(dir string, files []string) bool {
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// lockFile takes an exclusive flock on path, waiting for it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func buildKube(ctx context.Context, out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	c := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags="+kubeVersionFlags(), "-o", out+"/",
		"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-scheduler")
	c.Dir = filepath.Join(root, "internal", "testbed", "kubebuild")
	// The nested module is its own; a go.work or -mod flag of the caller
	// must not reach into it.
	c.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if b, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in %s: %v\n%s", c.Dir, err, b)
	}
	return nil
}

// kubeVersionFlags stamps the release into the binaries as Kubernetes'
// own build does (hack/lib/version.sh): a plain go build reports
// v0.0.0-master, which /version would show clients.
func kubeVersionFlags() string {
	minor := strings.Split(kubeVersion, ".")[1]
	flags := []string{"-s"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags, "-X", pkg+".gitVersion="+kubeVersion, "-X", pkg+".gitMajor=1",
			"-X", pkg+".gitMinor="+minor, "-X", pkg+".gitTreeState=clean")
	}
	return strings.Join(flags, " ")
}

// buildKwok installs kwok from the module proxy and keeps beside it,
// copied out of the same module, the stages kwokctl would give it (nodes
// made Ready, with heartbeats; bound pods Running; deleted pods removed)
// and the definition of its ClusterExec resource. Jobs' pods are not
// completed at once (pod-complete is left out): the bed has no Job
// controller, and a container a user deploys runs until it is stopped.
func buildKwok(ctx context.Context, out string) error {
	c := exec.CommandContext(ctx, "go", "install", "-trimpath", "-ldflags=-s", "sigs.k8s.io/kwok/cmd/kwok@"+kwokVersion)
	c.Dir = out
	c.Env = append(os.Environ(), "GOBIN="+out, "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if b, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("go install kwok: %v\n%s", err, b)
	}
	d := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/kwok@"+kwokVersion)
	d.Dir = out
	d.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	b, err := d.Output()
	if err != nil {
		return fmt.Errorf("go mod download kwok: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(b, &mod); err != nil {
		return fmt.Errorf("go mod download kwok: %w", err)
	}
	if err := copyStages(filepath.Join(mod.Dir, "kustomize", "stage"), filepath.Join(out, "stages.yaml")); err != nil {
		return err
	}
	crd, err := os.ReadFile(filepath.Join(mod.Dir, "kustomize", "crd", "bases", "kwok.x-k8s.io_clusterexecs.yaml"))
	if err != nil {
		return fmt.Errorf("kwok's ClusterExec definition: %w", err)
	}
	return os.WriteFile(filepath.Join(out, "clusterexecs.crd.yaml"), crd, 0o644)
}

// copyStages joins kwok's default stage files into one config file.
func copyStages(dir, dst string) error {
	var all []byte
	for _, f := range []string{
		"node/fast/node-initialize.yaml",
		"node/heartbeat/node-heartbeat.yaml",
		"pod/fast/pod-ready.yaml",
		"pod/fast/pod-delete.yaml",
	} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("kwok's stages: %w", err)
		}
		all = append(append(all, "---\n"...), b...)
	}
	return os.WriteFile(dst, all, 0o644)
}
