package binds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01/identity/asuser"
)

// Source is a host directory resolved for binding.
type Source struct {
	Path     string // its host path, every link resolved
	ReadOnly bool   // the user may read it, not write it
	// Made is the directory ds01 made for it (the topmost one), to be
	// taken back if the deploy fails; "" when it was there.
	Made string
	undo func() error
	// UID and GID own the directory; Dev and Ino are it.
	UID, GID uint32
	Dev, Ino uint64
	// Bind is what Docker is handed: a pin of the directory (see Pin), or
	// Path when none was made.
	Bind string
	h    *asuser.DirHandle
}

func fromHandle(h *asuser.DirHandle) Source {
	return Source{Path: h.Path, UID: h.UID, GID: h.GID, Dev: h.Dev, Ino: h.Ino, h: h}
}

// Close releases the directory held open since it was checked.
func (s Source) Close() {
	if s.h != nil {
		s.h.Close()
	}
}

// Pin pins the source for container under name (see Pin) and binds from
// the pin.
func (s *Source) Pin(container, name string) error {
	if s.h == nil {
		return fmt.Errorf("%s: no directory held to pin", s.Path)
	}
	p, err := Pin(s.h, container, name, s.ReadOnly)
	if err != nil {
		return err
	}
	s.Bind = p
	return nil
}

// ErrNotYours is a directory that is neither the user's nor one of their
// groups' shared ones.
var ErrNotYours = errors.New("not yours: through sudo ds01 binds only a directory you own, because root in the container (you have sudo there) reads and changes everything beneath it whatever its files' permissions, other users' files in a group's shared directory included; ask the administrator for a directory of your own, or to bind the shared one for you as root")

// Yours reports whether a user with cred may have s bound with root
// inside the container over it: only a directory the user owns. (A
// group's shared directory holds other members' files, which root in the
// container would read whatever their modes.)
func (s Source) Yours(c asuser.Cred) bool { return s.UID == c.UID }

// Undo removes what was made for the source, if it is still empty.
func (s Source) Undo() error {
	if s.undo == nil {
		return nil
	}
	return s.undo()
}

// DefaultWorkspace is ~/workspace/NAME, made as the user if missing,
// reached beneath the user's home without links: a ~/workspace that is a
// link to /etc must not get /etc bound read-write, nor directories made
// under it by root.
func DefaultWorkspace(cred asuser.Cred, home, name string) (Source, error) {
	d, err := asuser.OpenDir(cred, home)
	if err != nil {
		return Source{}, fmt.Errorf("your home %s: %w", home, err)
	}
	defer d.Close()
	rel := filepath.Join("workspace", name)
	made, err := d.MkdirAll(rel, 0o755)
	if err != nil {
		return Source{}, fmt.Errorf("workspace ~/%s: %w", rel, err)
	}
	h, err := d.OpenSubdir(rel)
	if err != nil {
		return Source{}, fmt.Errorf("workspace ~/%s: %w", rel, err)
	}
	src := fromHandle(h)
	if made != "" {
		src.Made = d.Path(made)
		src.undo = func() error { return removeEmpty(cred, home, rel, made) }
	}
	return src, nil
}

// removeEmpty takes back the directories from made down to rel, as the
// user, each only if empty.
func removeEmpty(cred asuser.Cred, home, rel, made string) error {
	d, err := asuser.OpenDir(cred, home)
	if err != nil {
		return err
	}
	defer d.Close()
	for p := rel; ; p = filepath.Dir(p) {
		if err := d.RemoveEmptyDir(p); err != nil {
			return err
		}
		if p == made || p == "." || p == "/" {
			return nil
		}
	}
}

// UserDir is a directory the user names: resolved and checked with the
// user's rights. It is bound read-write when the user may write it,
// read-only when they may only read it (a group's shared data), and
// refused when they may not read it. mkdir makes a missing one as the
// user first.
//
// owner, when not nil, is given a directory made for an account the host
// does not know (cred is then root's own, and no such user can have
// planted anything on the way): the container's user must own its
// workspace.
func UserDir(cred asuser.Cred, path string, mkdir bool, owner *[2]uint32) (Source, error) {
	if !filepath.IsAbs(path) {
		return Source{}, fmt.Errorf("%s: give an absolute path", path)
	}
	var src Source
	if mkdir {
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			if err := cred.Do(func() error { return mkdirOwned(path, cred, owner) }); err != nil {
				return Source{}, fmt.Errorf("making %s as you: %w", path, err)
			}
			src.Made = path
			src.undo = func() error { return cred.Do(func() error { return os.Remove(path) }) }
		}
	}
	h, err := asuser.OpenUserDir(cred, path, asuser.ReadWrite)
	ro := false
	if errors.Is(err, os.ErrPermission) {
		h, err = asuser.OpenUserDir(cred, path, asuser.Read)
		ro = true
	}
	if err != nil {
		src.Undo()
		return Source{}, fmt.Errorf("%w (ds01 binds only a directory you may read yourself)", err)
	}
	made, undo := src.Made, src.undo
	src = fromHandle(h)
	src.ReadOnly, src.Made, src.undo = ro, made, undo
	return src, nil
}

// mkdirOwned makes dir and, for an unknown account, chowns what it made
// by descriptor, never by path.
func mkdirOwned(dir string, cred asuser.Cred, owner *[2]uint32) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if owner == nil || cred.Drops() || os.Geteuid() != 0 {
		return nil
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchown(fd, int(owner[0]), int(owner[1]))
}
