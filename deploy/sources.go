package deploy

import (
	"errors"
	"fmt"
	"log/syslog"
	"os"

	"github.com/moby/moby/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01/deploy/binds"
)

// Sources are the host directories a container gets bound in.
type Sources struct {
	Workspace    binds.Source
	Data, Models binds.Source
}

func (s Sources) undo() {
	for _, src := range []binds.Source{s.Workspace, s.Data, s.Models} {
		src.Undo()
	}
}

func (s Sources) mounts() []mount.Mount {
	var out []mount.Mount
	for _, m := range []struct {
		src binds.Source
		dst string
	}{{s.Workspace, "/workspace"}, {s.Data, "/data"}, {s.Models, "/models"}} {
		if m.src.Path != "" {
			out = append(out, mount.Mount{Type: mount.TypeBind, Source: m.src.Path, Target: m.dst, ReadOnly: m.src.ReadOnly})
		}
	}
	return out
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
			s.undo()
			return Sources{}, fmt.Errorf("%s: %w", d.flag, err)
		}
	}
	if err := req.ownRule(s); err != nil {
		s.undo()
		return Sources{}, err
	}
	if err := req.setuidRule(s); err != nil {
		s.undo()
		return Sources{}, err
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
		logAccepted(fmt.Sprintf("root accepted the setuid risk for container %s of %s: %v", ContainerName(req.Name, req.Account.UID), req.Login, err))
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
