// Package testbed gives tests real things to work on: Debian bases built
// with mmdebstrap and cached outside the repository, the machine's Docker
// daemon, and a real registry (Debian's docker-registry) on loopback.
// Everything a test puts into Docker carries a unique prefix and is removed
// when the test ends; nothing else is touched.
package testbed

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/layers"
)

// Base is a Debian minbase with extra packages.
type Base struct {
	Suite    string
	Packages []string
}

var (
	// Bookworm is what CUDA-less Python work looks like on Debian 12.
	Bookworm = Base{Suite: "bookworm", Packages: []string{"sudo", "bash", "python3", "python3-pip"}}
	// Bullseye has the older useradd that, like the Ubuntu releases under
	// real CUDA images, writes a sparse lastlog sized by the UID.
	Bullseye = Base{Suite: "bullseye", Packages: []string{"sudo", "bash"}}
)

// Created is the fixed time of test bases: mmdebstrap honours
// SOURCE_DATE_EPOCH, so a base depends only on its inputs and the mirror.
var Created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func (b Base) key() string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("v1|minbase|%s|%s|%d", b.Suite, strings.Join(b.Packages, ","), Created.Unix())))
	return hex.EncodeToString(sum[:])[:12]
}

// CacheDir holds built bases: $DS01_TESTBED_CACHE, else
// $XDG_CACHE_HOME/ds01-testbed (~/.cache/ds01-testbed).
func CacheDir() (string, error) {
	if d := os.Getenv("DS01_TESTBED_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "ds01-testbed"), nil
}

// Tar returns the path of the base's root filesystem tar, building it with
// mmdebstrap (about 20 s) when the cache does not have it. Concurrent test
// processes wait for one build under a file lock.
func (b Base) Tar(ctx context.Context) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, b.Suite+"-"+b.key()+".tar")
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", out, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
		return out, nil
	}
	mirror, err := Mirror()
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", fmt.Errorf("mmdebstrap is not installed (apt-get install mmdebstrap; .ci/run does): %w", err)
	}
	// mmdebstrap picks its output format from the extension.
	tmp := strings.TrimSuffix(out, ".tar") + ".partial.tar"
	cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include="+strings.Join(b.Packages, ","), b.Suite, tmp, mirror)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", Created.Unix()))
	// mmdebstrap reads extra sources from a stdin that is not a terminal.
	cmd.Stdin = nil
	if outb, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mmdebstrap %s: %w\n%s", b.Suite, err, outb)
	}
	return out, os.Rename(tmp, out)
}

// Image is the base as a one-layer image, its layer the plain tar.
func (b Base) Image(ctx context.Context) (v1.Image, error) {
	path, err := b.Tar(ctx)
	if err != nil {
		return nil, err
	}
	l, err := layers.FromFile(path)
	if err != nil {
		return nil, err
	}
	return ImageFromLayers(b.Suite, l)
}

// ImageFromLayers makes an image of the layers with a plain Debian-like
// config, created at Created.
func ImageFromLayers(name string, ls ...v1.Layer) (v1.Image, error) {
	img := empty.Image
	for _, l := range ls {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: Created}, CreatedBy: "testbed " + name}})
		if err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: Created}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Cmd = []string{"bash"}
	cfg.Config.Labels = map[string]string{"org.example.testbed": name}
	return mutate.ConfigFile(img, cfg)
}

// Prefix is a unique name prefix for what one test puts into Docker.
func Prefix(t testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "ds01test-" + hex.EncodeToString(b)
}

// Docker connects to the machine's daemon. Tests that claim to test Docker
// behaviour need a real one: without it they fail, unless -short is given.
func Docker(t testing.TB) *deploy.Daemon {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that needs the Docker daemon")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := deploy.Connect(ctx)
	if err != nil {
		t.Fatalf("%v\nthis test needs a running Docker daemon (go test -short skips such tests)", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// RemoveImage removes a tag the test made when it ends.
func RemoveImage(t testing.TB, d *deploy.Daemon, ref string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
}
