// Package deploy is ds01's side of the Docker daemon: loading assembled
// images, and creating, running and removing containers.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"
)

// Store is how the daemon keeps images. The two differ in what a load
// archive may leave out and in what Docker calls an image's ID.
type Store string

const (
	// GraphDriver is the classic store (overlay2, fuse-overlayfs, …): image
	// IDs are config digests, and a load may leave out layers it has.
	GraphDriver Store = "graphdriver"
	// Containerd is the containerd image store (default on fresh Engine 29
	// installs): image IDs are manifest digests.
	Containerd Store = "containerd"
)

// Daemon is a connection to the Docker daemon with what ds01 learned of it.
type Daemon struct {
	*client.Client
	APIVersion string
	Store      Store
	Driver     string // the storage driver, e.g. overlay2, fuse-overlayfs
	// ContainerdSocket is the socket of the engine's containerd, read for
	// base descriptors on the containerd image store when this process may
	// use it: CONTAINERD_ADDRESS, else, when the daemon is the local one,
	// the first default socket that exists.
	ContainerdSocket string

	// heldDescriptors, when set (by tests only), changes the base's layer
	// descriptors that a delta load names, as a wrong source of them would.
	heldDescriptors func(v1.Image) v1.Image
}

// ErrNoDaemon wraps every failure to reach the daemon, so that commands
// can tell the user what to check.
var ErrNoDaemon = errors.New("cannot reach the Docker daemon")

// Connect connects with the settings of the docker CLI's environment
// (DOCKER_HOST and friends), negotiates the API version with the daemon
// (Engine 20.10 speaks 1.41, current engines 1.5x) and detects its store.
func Connect(ctx context.Context) (*Daemon, error) {
	c, err := client.New(client.FromEnv) // negotiates the API version on first use
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDaemon, err)
	}
	return connected(ctx, c)
}

func connected(ctx context.Context, c *client.Client) (*Daemon, error) {
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w at %s: %v (is dockerd running, and may you use its socket?)", ErrNoDaemon, c.DaemonHost(), err)
	}
	info, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: docker info: %v", ErrNoDaemon, err)
	}
	d := &Daemon{Client: c, APIVersion: c.ClientVersion(), Store: GraphDriver, Driver: info.Info.Driver}
	for _, kv := range info.Info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			d.Store = Containerd
		}
	}
	d.ContainerdSocket = strings.TrimPrefix(os.Getenv("CONTAINERD_ADDRESS"), "unix://")
	if h := c.DaemonHost(); d.ContainerdSocket == "" && (h == "unix:///var/run/docker.sock" || h == "unix:///run/docker.sock") {
		// Another engine's containerd must not be taken for this one's.
		for _, s := range DefaultContainerdSockets {
			if _, err := os.Stat(s); err == nil {
				d.ContainerdSocket = s
				break
			}
		}
	}
	return d, nil
}

// ConnectHost connects to the daemon at host (unix:///path or tcp://…)
// instead of the environment's, as for a second engine in the tests.
func ConnectHost(ctx context.Context, host string) (*Daemon, error) {
	c, err := client.New(client.FromEnv, client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDaemon, err)
	}
	return connected(ctx, c)
}
