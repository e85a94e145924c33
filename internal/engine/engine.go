// Package engine is the Docker Engine as ds01 uses it: the few calls it
// makes, behind small interfaces a fake can stand in for, the store the
// engine keeps images in, and the loading of an archive with the check
// that the engine holds what was sent.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moby/moby/client"
)

// Images are the image calls ds01 makes.
type Images interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageHistory(ctx context.Context, ref string, opts ...client.ImageHistoryOption) (client.ImageHistoryResult, error)
	ImageList(ctx context.Context, options client.ImageListOptions) (client.ImageListResult, error)
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (client.ImageLoadResult, error)
	ImageSave(ctx context.Context, refs []string, opts ...client.ImageSaveOption) (client.ImageSaveResult, error)
	ImageTag(ctx context.Context, options client.ImageTagOptions) (client.ImageTagResult, error)
	ImageRemove(ctx context.Context, ref string, options client.ImageRemoveOptions) (client.ImageRemoveResult, error)
}

// Containers are the container calls ds01 makes.
type Containers interface {
	ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerStart(ctx context.Context, id string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerStop(ctx context.Context, id string, options client.ContainerStopOptions) (client.ContainerStopResult, error)
	ContainerWait(ctx context.Context, id string, options client.ContainerWaitOptions) client.ContainerWaitResult
	ContainerRemove(ctx context.Context, id string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerLogs(ctx context.Context, id string, options client.ContainerLogsOptions) (client.ContainerLogsResult, error)
	ContainerDiff(ctx context.Context, id string, options client.ContainerDiffOptions) (client.ContainerDiffResult, error)
	ContainerStatPath(ctx context.Context, id string, options client.ContainerStatPathOptions) (client.ContainerStatPathResult, error)
	CopyFromContainer(ctx context.Context, id string, options client.CopyFromContainerOptions) (client.CopyFromContainerResult, error)
	CopyToContainer(ctx context.Context, id string, options client.CopyToContainerOptions) (client.CopyToContainerResult, error)
}

// Execs are the calls that run a command in a running container.
type Execs interface {
	ExecCreate(ctx context.Context, id string, options client.ExecCreateOptions) (client.ExecCreateResult, error)
	ExecAttach(ctx context.Context, execID string, options client.ExecAttachOptions) (client.ExecAttachResult, error)
	ExecInspect(ctx context.Context, execID string, options client.ExecInspectOptions) (client.ExecInspectResult, error)
}

// Engine is every call ds01 makes to a Docker Engine, and no other: a
// fake implements it for fast tests, and a reader sees here what ds01
// may ask of Docker.
type Engine interface {
	Images
	Containers
	Execs
	Events(ctx context.Context, options client.EventsListOptions) client.EventsResult
	Info(ctx context.Context, options client.InfoOptions) (client.SystemInfoResult, error)
	DaemonHost() string
	Close() error
}

var _ Engine = (*client.Client)(nil)

// Store is how the engine keeps images. The two differ in what a load
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

// Docker is an engine with what ds01 learned of it when it connected.
type Docker struct {
	Engine
	APIVersion string
	Store      Store
	Driver     string // the storage driver, e.g. overlay2, fuse-overlayfs
	// ContainerdSocket is the socket of the engine's containerd, read for
	// base descriptors on the containerd image store when this process may
	// use it: CONTAINERD_ADDRESS, else, when the daemon is the local one,
	// the first default socket that exists.
	ContainerdSocket string
}

// DefaultContainerdSockets are where a local engine's containerd listens:
// a system containerd, or the one dockerd starts itself.
var DefaultContainerdSockets = []string{"/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock"}

// ErrNoDaemon wraps every failure to reach the daemon, so that commands
// can tell the user what to check.
var ErrNoDaemon = errors.New("cannot reach the Docker daemon")

// Connect connects with the settings of the docker CLI's environment
// (DOCKER_HOST and friends), negotiates the API version with the daemon
// (Engine 20.10 speaks 1.41, current engines 1.5x) and detects its store.
func Connect(ctx context.Context) (*Docker, error) {
	c, err := client.New(client.FromEnv) // negotiates the API version on first use
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDaemon, err)
	}
	return connected(ctx, c)
}

// ConnectHost connects to the daemon at host (unix:///path or tcp://…)
// instead of the environment's, as for a second engine in the tests.
func ConnectHost(ctx context.Context, host string) (*Docker, error) {
	c, err := client.New(client.FromEnv, client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDaemon, err)
	}
	return connected(ctx, c)
}

func connected(ctx context.Context, c *client.Client) (*Docker, error) {
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w at %s: %v (is dockerd running, and may you use its socket?)", ErrNoDaemon, c.DaemonHost(), err)
	}
	d, err := Detect(ctx, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	d.APIVersion = c.ClientVersion()
	return d, nil
}

// Detect learns an engine's store and driver from docker info.
func Detect(ctx context.Context, e Engine) (*Docker, error) {
	info, err := e.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, fmt.Errorf("%w: docker info: %v", ErrNoDaemon, err)
	}
	d := &Docker{Engine: e, Store: GraphDriver, Driver: info.Info.Driver}
	for _, kv := range info.Info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			d.Store = Containerd
		}
	}
	d.ContainerdSocket = strings.TrimPrefix(os.Getenv("CONTAINERD_ADDRESS"), "unix://")
	if h := e.DaemonHost(); d.ContainerdSocket == "" && (h == "unix:///var/run/docker.sock" || h == "unix:///run/docker.sock") {
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
