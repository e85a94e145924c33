package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/syslog"
	"os"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01/deploy/binds"
	"github.com/ds01/ds01/identity/asuser"

	"github.com/ds01/ds01/assemble/label"
)

// Sources are the host directories a container gets bound in.
type Sources struct {
	Workspace    binds.Source
	Data, Models binds.Source
}

// named are the sources with the names their pins and labels carry.
func (s *Sources) named() []struct {
	name string
	src  *binds.Source
} {
	return []struct {
		name string
		src  *binds.Source
	}{{"workspace", &s.Workspace}, {"data", &s.Data}, {"models", &s.Models}}
}

func (s Sources) undo(container string) {
	for _, n := range s.named() {
		n.src.Undo()
	}
	binds.Unpin(container)
}

// close releases the directories held since they were checked.
func (s Sources) close() {
	for _, n := range s.named() {
		n.src.Close()
	}
}

func (s Sources) mounts() []mount.Mount {
	var out []mount.Mount
	for _, n := range s.named() {
		if src := n.src; src.Path != "" {
			from := src.Path
			if src.Bind != "" {
				from = src.Bind
			}
			out = append(out, mount.Mount{Type: mount.TypeBind, Source: from, Target: "/" + n.name, ReadOnly: src.ReadOnly})
		}
	}
	return out
}

// pin pins every source (see binds.Pin) and labels how to pin it again.
func (s *Sources) pin(container string) error {
	for _, n := range s.named() {
		if n.src.Path == "" {
			continue
		}
		if err := n.src.Pin(container, n.name); err != nil {
			return err
		}
	}
	return nil
}

// labels record each pinned source, for pinning it again before a later
// start: label.Bind+name is DEV:INO:rw|ro:PATH.
func (s *Sources) labels() map[string]string {
	out := map[string]string{}
	for _, n := range s.named() {
		if n.src.Bind == "" {
			continue
		}
		mode := "rw"
		if n.src.ReadOnly {
			mode = "ro"
		}
		out[label.Bind+n.name] = fmt.Sprintf("%d:%d:%s:%s", n.src.Dev, n.src.Ino, mode, n.src.Path)
	}
	return out
}

// Repin makes the pins of a container's bind sources again where they
// are gone (after a reboot) or stale, before ds01 starts it: each source
// is opened again as the user without links, and must still be the
// directory checked at deploy (same device and inode), or the start is
// refused.
//
// Only a label of a source the container really binds from its pin
// counts: labels a base brought along (a container inherits its image's)
// name nothing ds01 pinned.
func Repin(container string, labels map[string]string, mounts []mount.Mount, cred asuser.Cred) error {
	for _, name := range []string{"workspace", "data", "models"} {
		v, ok := labels[label.Bind+name]
		if !ok || v == "-" || !bindsPin(mounts, container, name) {
			continue
		}
		var dev, ino uint64
		var mode, path string
		parts := strings.SplitN(label.Unescape(v), ":", 4)
		if len(parts) != 4 {
			return fmt.Errorf("container %s: label %s%s is not ds01's", container, label.Bind, name)
		}
		if _, err := fmt.Sscanf(parts[0]+" "+parts[1], "%d %d", &dev, &ino); err != nil {
			return fmt.Errorf("container %s: label %s%s: %w", container, label.Bind, name, err)
		}
		mode, path = parts[2], parts[3]
		if binds.Pinned(container, name, dev, ino) {
			continue
		}
		if err := repinOne(container, name, path, mode == "ro", dev, ino, cred); err != nil {
			return err
		}
	}
	return nil
}

func repinOne(container, name, path string, ro bool, dev, ino uint64, cred asuser.Cred) error {
	root, err := asuser.OpenDir(cred, "/")
	if err != nil {
		return err
	}
	defer root.Close()
	h, err := root.OpenSubdir(strings.TrimPrefix(path, "/"))
	if err != nil {
		return fmt.Errorf("the %s of %s, %s: %w; ds01 binds only the directory checked at deploy: retire the container and deploy it again", name, container, path, err)
	}
	defer h.Close()
	if h.Dev != dev || h.Ino != ino {
		return fmt.Errorf("the %s of %s at %s is no longer the directory checked at deploy (it was replaced since); ds01 binds only that one: retire the container and deploy it again", name, container, path)
	}
	_, err = binds.Pin(h, container, name, ro)
	return err
}

// ErrRootOnly is an option only root itself may use.
var ErrRootOnly = errors.New("for root itself only")

// checkRootOnly refuses what would give a user more than their own
// container: the host's IPC namespace (every user's /dev/shm), a cgroup
// outside the user's slice (escaping their share of CPU and memory), or
// accepting the setuid risk.
func (req DeployRequest) checkRootOnly() error {
	if req.Root {
		return nil
	}
	switch {
	case req.IPCHost:
		return fmt.Errorf("--ipc host shares the host's IPC namespace, and every user's /dev/shm files with it: %w; the container gets its own /dev/shm (--shm-size sets its size)", ErrRootOnly)
	case req.CgroupParent != "" && req.CgroupParent != UserSlice(req.Account.Name):
		return fmt.Errorf("--cgroup-parent %s takes the container out of your slice: %w; leave it out and the container goes into your own", req.CgroupParent, ErrRootOnly)
	case req.AcceptSetuidRisk:
		return fmt.Errorf("--accept-setuid-risk: %w; ask the administrator to mount the filesystem nosuid,nodev", ErrRootOnly)
	}
	return nil
}

// sources resolves the bind sources with the user's rights and applies
// the setuid rule; a dry run resolves nothing and makes nothing.
func (req DeployRequest) sources() (Sources, error) {
	var s Sources
	if req.DryRun {
		s.Workspace.Path = req.Workspace
		if s.Workspace.Path == "" {
			s.Workspace.Path = Workspace(req.Home, req.Name)
		}
		s.Data.Path, s.Models.Path = req.Data, req.Models
		return s, nil
	}
	var err error
	if req.Workspace == "" {
		s.Workspace, err = binds.DefaultWorkspace(req.Cred, req.Home, req.Name)
	} else {
		s.Workspace, err = binds.UserDir(req.Cred, req.Workspace, true, &[2]uint32{req.Account.UID, req.Account.GID})
	}
	if err != nil {
		return s, fmt.Errorf("workspace: %w", err)
	}
	for _, d := range []struct {
		path, flag string
		to         *binds.Source
	}{{req.Data, "--data", &s.Data}, {req.Models, "--models", &s.Models}} {
		if d.path == "" {
			continue
		}
		if *d.to, err = binds.UserDir(req.Cred, d.path, false, nil); err != nil {
			s.undo("")
			return Sources{}, fmt.Errorf("%s: %w", d.flag, err)
		}
	}
	if err := req.ownRule(s); err != nil {
		s.undo("")
		return Sources{}, err
	}
	if err := req.setuidRule(s); err != nil {
		s.undo("")
		return Sources{}, err
	}
	if req.Pin {
		cname := label.ContainerName(req.Name, req.Account.UID)
		if err := s.pin(cname); err != nil {
			s.undo(cname)
			return Sources{}, err
		}
	}
	return s, nil
}

// ownRule applies to a user ds01 acts for through sudo: only their own
// directories, or their groups' shared ones, are bound.
func (req DeployRequest) ownRule(s Sources) error {
	if req.Root || !req.SetuidRule {
		return nil
	}
	for _, b := range []struct {
		flag string
		src  binds.Source
	}{{"--workspace", s.Workspace}, {"--data", s.Data}, {"--models", s.Models}} {
		if b.src.Path != "" && !b.src.Yours(req.Cred) {
			return fmt.Errorf("%s %s: %w", b.flag, b.src.Path, binds.ErrNotYours)
		}
	}
	return nil
}

func (req DeployRequest) setuidRule(s Sources) error {
	if !req.SetuidRule {
		return nil
	}
	var dirs []string
	for _, src := range []binds.Source{s.Workspace, s.Data, s.Models} {
		if src.Path != "" {
			dirs = append(dirs, src.Path)
		}
	}
	err := binds.CheckHost(dirs)
	if err != nil && req.AcceptSetuidRisk && req.Root {
		logAccepted(fmt.Sprintf("root accepted the setuid risk for container %s of %s: %v", label.ContainerName(req.Name, req.Account.UID), req.Login, err))
		return nil
	}
	return err
}

// logAccepted leaves a trace of root's choice where an administrator
// looks: the auth log through syslog when the host has one, and stderr.
func logAccepted(msg string) {
	fmt.Fprintln(os.Stderr, "ds01: warning:", msg)
	if w, err := syslog.New(syslog.LOG_AUTH|syslog.LOG_WARNING, "ds01"); err == nil {
		w.Warning(msg)
		w.Close()
	}
}

// DefaultShmSize is half the host's memory, the kernel's own default for
// a tmpfs: PyTorch's data-loader workers pass batches through /dev/shm
// and fail with "bus error" at Docker's 64 MB, and tmpfs pages cost
// memory only when written (charged to the container's memory cgroup).
func DefaultShmSize() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil || si.Totalram == 0 {
		return 8 << 30
	}
	return int64(si.Totalram) * int64(si.Unit) / 2
}

// StartOwn starts a user's container the way ds01 starts it: its bind
// sources pinned again first where they are gone (see Repin).
func (d *Daemon) StartOwn(ctx context.Context, c container.InspectResponse, cred asuser.Cred) error {
	name := strings.TrimPrefix(c.Name, "/")
	var mounts []mount.Mount
	if c.HostConfig != nil {
		mounts = c.HostConfig.Mounts
	}
	if err := Repin(name, c.Config.Labels, mounts, cred); err != nil {
		return err
	}
	if _, err := d.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	return nil
}

// bindsPin reports whether the container binds name from its pin.
func bindsPin(mounts []mount.Mount, container, name string) bool {
	want := binds.PinPath(container, name)
	for _, m := range mounts {
		if m.Type == mount.TypeBind && m.Source == want {
			return true
		}
	}
	return false
}
