package testbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/registry"
)

// Engine is a Docker engine with the containerd image store, built from
// Debian's own packages.
type Engine struct {
	Name string
	Root registry.Debian
}

var enginePackages = []string{"docker.io", "docker-cli", "containerd", "runc", "iptables", "procps", "ca-certificates"}

var (
	// Trixie is Debian 13's Docker 26.1 with containerd 1.7 (API 1.45):
	// its image list leaves out an image whose blobs are missing.
	Trixie = Engine{"trixie", registry.Debian{Suite: "trixie", Packages: enginePackages}}
	// Sid is Debian unstable's Docker 28.5 with containerd 2.1 (API 1.51),
	// the nearest to a fresh Engine 29 install: its image list marks such
	// an image's manifest not Available. sid's Release file on a mirror may
	// be stale, so its date is not checked.
	Sid = Engine{"sid", registry.Debian{Suite: "sid", Packages: enginePackages, AptOpts: []string{`Acquire::Check-Valid-Until "false"`}}}
	// Engines are the containerd-store engines the tests run on.
	Engines = []Engine{Trixie, Sid}
)

// The engine's start: the cgroup v1 hierarchies are mounted afresh
// read-write (a remount is refused while they are in use), containerd and
// dockerd start with their state on bind mounts from the host's disk
// (containerd's overlayfs snapshotter cannot mount on top of the host's
// fuse-overlayfs, nor in the container's /tmp), and the sockets of both
// appear in a bind-mounted directory.
const engineStart = `set -e
mount -o remount,rw /sys
if awk '$2=="/sys/fs/cgroup"&&$3=="cgroup2"{f=1} END{exit !f}' /proc/mounts; then
  umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
fi
for m in $(awk '$3=="cgroup"{print $2}' /proc/mounts); do
  c=${m##*/}
  o=$c; [ "$c" = systemd ] && o=none,name=systemd
  umount "$m" && mount -t cgroup -o "$o" cgroup "$m" || true
done
containerd --address /ds01run/containerd.sock >/ds01run/containerd.log 2>&1 &
for i in $(seq 100); do [ -S /ds01run/containerd.sock ] && break; sleep 0.1; done
exec dockerd --containerd /ds01run/containerd.sock -H unix:///ds01run/docker.sock
`

// The engine has a bridge of its own, in its own network namespace, and
// leaves iptables alone: its containers talk to nothing outside.
// Registries on private addresses (the tests' on the machine daemon's
// bridge gateway) are spoken to over plain HTTP, as ds01 does.
const engineConfig = `{"features":{"containerd-snapshotter":true},"storage-driver":"overlayfs","iptables":false,"ip6tables":false,` +
	`"insecure-registries":["10.0.0.0/8","172.16.0.0/12","192.168.0.0/16"]}`

// BridgeGateway is the host's address on the machine daemon's default
// bridge: what the containerd engines, in containers there, reach the
// host by.
func BridgeGateway(t testing.TB, outer *deploy.Daemon) string {
	t.Helper()
	// Networks are none of ds01's business: the raw client asks.
	raw, ok := outer.Engine.(*client.Client)
	if !ok {
		t.Fatal("the outer daemon is not a Docker client")
	}
	n, err := raw.NetworkInspect(context.Background(), "bridge", client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Network.IPAM.Config {
		if c.Gateway.IsValid() {
			return c.Gateway.String()
		}
	}
	// Engine 20.10 often leaves the gateway out: the bridge's own address.
	br := n.Network.Options["com.docker.network.bridge.name"]
	if iface, err := net.InterfaceByName(br); err == nil {
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	t.Fatalf("the machine daemon's bridge network (%q) has no gateway address", br)
	return ""
}

// ContainerdEngine starts e, a Docker engine that keeps images in the
// containerd image store, as fresh Engine 29 installs do, inside a
// container of the machine's daemon, and connects to it. Its root
// filesystem is built with mmdebstrap once per machine (about 20 s) and
// cached beside the test bases. The host's /tmp is its /tmp, so that a
// test's directories bind-mount into its containers by the same path. It
// cannot reach the host's loopback. A test that cannot start it fails.
func ContainerdEngine(t testing.TB, outer *deploy.Daemon, e Engine) *deploy.Daemon {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := cacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if e.Name == Sid.Name {
		// sid is Debian's moving target: on a day its packages cannot be
		// installed together, trixie's engine stands in, and says so.
		if _, err := e.Root.Tar(ctx, dir); err != nil {
			t.Logf("sid's engine cannot be built today, trixie's stands in: %v", err)
			e = Trixie
		}
	}
	ce, stop, err := StartContainerdEngine(ctx, outer, e, dir, t.TempDir(), Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ce
}

// StartContainerdEngine is ContainerdEngine for programs (the bench):
// the root filesystem cached in cache, the engine's state in state, its
// image and container named with prefix. stop removes them.
func StartContainerdEngine(ctx context.Context, outer *deploy.Daemon, e Engine, cache, state, prefix string) (*deploy.Daemon, func(), error) {
	tarPath, err := e.Root.Tar(ctx, cache)
	if err != nil {
		return nil, nil, fmt.Errorf("building the containerd engine's root filesystem: %w", err)
	}
	l, err := layers.FromFile(tarPath)
	if err != nil {
		return nil, nil, err
	}
	img, err := registry.ImageFromLayers("containerd-engine", l)
	if err != nil {
		return nil, nil, err
	}
	tag := prefix + "/containerd-engine-" + e.Name + ":latest"
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	stops = append(stops, func() {
		outer.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true})
	})
	if _, err := outer.Load(ctx, img, tag, nil); err != nil {
		stop()
		return nil, nil, err
	}
	for _, d := range []string{"docker", "containerd", "run"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			stop()
			return nil, nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(state, "daemon.json"), []byte(engineConfig), 0o644); err != nil {
		stop()
		return nil, nil, err
	}
	bind := func(src, dst string) mount.Mount {
		return mount.Mount{Type: mount.TypeBind, Source: filepath.Join(state, src), Target: dst}
	}
	created, err := outer.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: prefix + "-containerd-engine-" + e.Name,
		Config: &container.Config{Image: tag, Cmd: []string{"sh", "-c", engineStart},
			Labels: map[string]string{"ds01test.purpose": "containerd-engine"}},
		HostConfig: &container.HostConfig{
			// Plain --privileged fails on these machines; this does not.
			CapAdd:      []string{"ALL"},
			CapDrop:     []string{"SYS_RESOURCE"},
			SecurityOpt: []string{"seccomp=unconfined", "apparmor=unconfined"},
			// systempaths=unconfined, as the docker CLI sends it: empty,
			// not absent, lists.
			MaskedPaths:   []string{},
			ReadonlyPaths: []string{},
			CgroupnsMode:  container.CgroupnsModeHost,
			// Its own network namespace, never the host's: a dockerd
			// started without a bridge deletes any docker0 it sees, and
			// in the host's namespace that is the machine daemon's.
			Mounts: []mount.Mount{
				bind("docker", "/var/lib/docker"), bind("containerd", "/var/lib/containerd"),
				{Type: mount.TypeBind, Source: os.TempDir(), Target: os.TempDir()},
				bind("run", "/ds01run"), {Type: mount.TypeBind, Source: filepath.Join(state, "daemon.json"), Target: "/etc/docker/daemon.json", ReadOnly: true},
			},
		},
	})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("creating the containerd engine: %w", err)
	}
	stops = append(stops, func() {
		outer.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	})
	if _, err := outer.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		stop()
		return nil, nil, fmt.Errorf("starting the containerd engine: %w", err)
	}
	sock := "unix://" + filepath.Join(state, "run", "docker.sock")
	var last error
	for i := 0; i < 150; i++ {
		if _, err := os.Stat(filepath.Join(state, "run", "docker.sock")); err == nil {
			d, err := deploy.ConnectHost(ctx, sock)
			if err == nil {
				// Its containerd's socket is beside dockerd's, for the tests
				// of the content-store source of base descriptors.
				d.ContainerdSocket = filepath.Join(state, "run", "containerd.sock")
				stops = append(stops, func() { d.Close() })
				return d, stop, nil
			}
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	var b strings.Builder
	if logs, err := outer.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "30"}); err == nil {
		buf := make([]byte, 16<<10)
		n, _ := logs.Read(buf)
		b.Write(buf[:n])
	}
	stop()
	return nil, nil, fmt.Errorf("the containerd engine did not answer on %s: %v\n%s", sock, last, b.String())
}
