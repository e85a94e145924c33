package binds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01/identity/asuser"
)

// PinRoot is where ds01 keeps the mounts it pins bind sources on: a
// directory only root can change. Docker resolves a bind source path when
// it starts a container, as root and following links, so a path in the
// user's home, checked at deploy, could be swapped for a link to / before
// the next start. A pin is a clone of the checked directory itself (open
// as the user without links, open_tree, move_mount), so what Docker binds
// is that directory whatever becomes of its path. Pins live in /run and go
// at reboot; ds01 makes them again before every start it performs.
var PinRoot = "/run/ds01/binds"

// PinPath is where the pin of name for container is.
func PinPath(container, name string) string { return filepath.Join(pinDir(container), name) }

// pinDir is where container's pins are.
func pinDir(container string) string { return filepath.Join(PinRoot, container) }

// Pin mounts the directory h onto PinRoot/container/name, recursively,
// nosuid and nodev (and read-only when ro) for the container's view, and
// returns that path.
func Pin(h *asuser.DirHandle, container, name string, ro bool) (string, error) {
	target := filepath.Join(pinDir(container), name)
	if err := mkdirRootOnly(target); err != nil {
		return "", fmt.Errorf("pinning %s: %w", h.Path, err)
	}
	tree, err := unix.OpenTree(h.FD(), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return "", fmt.Errorf("pinning %s (open_tree, Linux 5.2 or later): %w", h.Path, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if ro {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return "", fmt.Errorf("pinning %s (mount_setattr, Linux 5.12 or later): %w", h.Path, err)
	}
	unmount(target) // a stale pin of an earlier start
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("pinning %s (move_mount): %w", h.Path, err)
	}
	return target, nil
}

func mkdirRootOnly(dir string) error {
	for _, d := range []string{filepath.Dir(PinRoot), PinRoot, filepath.Dir(dir), dir} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
			return fmt.Errorf("%s must be a directory only root can change", d)
		}
	}
	// /run/ds01 itself is reached by the service's socket users.
	return os.Chmod(filepath.Dir(PinRoot), 0o755)
}

func unmount(target string) {
	for unix.Unmount(target, unix.MNT_DETACH) == nil {
	}
}

// Pinned reports whether the pin of name for container is in place and
// is the directory with dev and ino.
func Pinned(container, name string, dev, ino uint64) bool {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(pinDir(container), name), &st); err != nil {
		return false
	}
	return st.Dev == dev && st.Ino == ino
}

// Unpin takes away every pin of container.
func Unpin(container string) error {
	dir := pinDir(container)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		unmount(p)
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
