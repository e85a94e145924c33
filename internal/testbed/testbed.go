// Package testbed gives tests real things to work on: Debian bases built
// with mmdebstrap and cached outside the repository, the machine's Docker
// daemon, a real registry (Debian's docker-registry) on loopback, and a
// real Kubernetes control plane on loopback (etcd, kube-apiserver,
// kube-scheduler, with kwok playing GPU nodes). Everything a test puts
// into Docker carries a unique prefix and is removed when the test ends;
// nothing else is touched.
package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/registry"
)

var (
	// Bookworm is what CUDA-less Python work looks like on Debian 12.
	Bookworm = registry.Bookworm
	// Bullseye has the older useradd that, like the Ubuntu releases under
	// real CUDA images, writes a sparse lastlog sized by the UID.
	Bullseye = registry.Bullseye
)

// Base is the image of a Debian base, built once and cached in
// $DS01_TESTBED_CACHE (default ~/.cache/ds01-testbed), outside the repository.
func Base(t testing.TB, b registry.Debian) v1.Image {
	t.Helper()
	dir, err := cacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := b.Image(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	return img
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

// LeftContainers lists the containers ds01 makes for itself (reading a
// base's files, installing packages: label ds01.purpose) that are still
// there a few seconds later: other tests running at the same time make
// such containers for a moment, a leak keeps them. Only those for
// the images of project count (label ds01.for): other packages' tests
// run at the same time on the same daemon.
func LeftContainers(t testing.TB, d interface {
	ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error)
}, project string) []string {
	t.Helper()
	list := func() map[string]bool {
		cs, err := d.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label.Purpose)})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, c := range cs.Items {
			if strings.HasSuffix(c.Labels[label.For], "/"+project+":latest") {
				ids[c.ID] = true
			}
		}
		return ids
	}
	first := list()
	if len(first) == 0 {
		return nil
	}
	time.Sleep(3 * time.Second)
	var left []string
	for id := range list() {
		if first[id] {
			left = append(left, id)
		}
	}
	return left
}

// Tmux runs tmux on a server of the test's own (tmux -L), so that tests
// of other packages running at the same time, whose last session ending
// stops the default server, never take this one with them. The server is
// killed when the test ends.
func Tmux(t testing.TB) func(args ...string) *exec.Cmd {
	t.Helper()
	sock := Prefix(t)
	t.Cleanup(func() { exec.Command("tmux", "-L", sock, "kill-server").Run() })
	return func(args ...string) *exec.Cmd { return exec.Command("tmux", append([]string{"-L", sock}, args...)...) }
}
