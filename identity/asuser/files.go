package asuser

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLink is a symbolic link where ds01 resolves paths without them.
var ErrLink = errors.New("a symbolic link (ds01 follows no links in the places it reads or writes for you; replace it with a directory or file)")

// ErrNotRegular is a file that is not a regular file (a FIFO, a device, a
// directory), which a reader would block on or misread.
var ErrNotRegular = errors.New("not a regular file (ds01 reads only regular files here)")

// ErrTooLarge is a file over the cap its reader set.
var ErrTooLarge = errors.New("larger than ds01 reads")

// Dir is a directory opened as the user, from which paths are resolved
// beneath it and without symbolic links.
type Dir struct {
	cred Cred
	fd   int
	path string
}

// OpenDir opens path as c. The path itself is resolved first (an
// administrator's /home may be a link to /data/home); what lies beneath
// it is reached only without links.
func OpenDir(c Cred, path string) (*Dir, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	d := &Dir{cred: c, path: real}
	err = c.Do(func() error {
		fd, err := unix.Open(real, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		d.fd = fd
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: real, Err: err}
	}
	return d, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Path is where rel lies on the host.
func (d *Dir) Path(rel string) string { return filepath.Join(d.path, rel) }

func (d *Dir) open(dirfd int, rel string, flags int, mode uint32) (int, error) {
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ELOOP) {
		return -1, ErrLink
	}
	return fd, err
}

func (d *Dir) pathErr(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: d.Path(rel), Err: err}
}

// MkdirAll makes rel and its missing parents as the user, with mode, and
// returns the topmost directory it made ("" when all were there), so that
// a caller that fails later can take back exactly what it made.
func (d *Dir) MkdirAll(rel string, mode os.FileMode) (made string, err error) {
	err = d.cred.Do(func() error {
		made, err = d.mkdirAll(rel, mode)
		return err
	})
	return made, d.pathErr("mkdir", rel, err)
}

func (d *Dir) mkdirAll(rel string, mode os.FileMode) (string, error) {
	made := ""
	cur := ""
	for _, part := range strings.Split(filepath.Clean(rel), "/") {
		if part == "" || part == "." {
			continue
		}
		next := filepath.Join(cur, part)
		parent, err := d.open(d.fd, orDot(cur), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return made, err
		}
		err = unix.Mkdirat(parent, part, uint32(mode.Perm()))
		unix.Close(parent)
		switch {
		case err == nil:
			if made == "" {
				made = next
			}
		case errors.Is(err, unix.EEXIST):
			fd, err := d.open(d.fd, next, unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != nil {
				if errors.Is(err, unix.ENOTDIR) {
					return made, fmt.Errorf("%s is not a directory", d.Path(next))
				}
				return made, err
			}
			unix.Close(fd)
		default:
			return made, err
		}
		cur = next
	}
	return made, nil
}

func orDot(s string) string {
	if s == "" {
		return "."
	}
	return s
}

// Pending is a file being written beside its final name: no reader sees
// it until Commit renames it over that name, and Abort leaves nothing.
// Writes go through the descriptor, opened as the user, so they need no
// identity of their own; only making and renaming do.
type Pending struct {
	*os.File
	d      *Dir
	parent int
	tmp    string
	base   string
	mode   os.FileMode
}

// Create starts the atomic replacement of rel: its parent made as the
// user if missing, a temporary file beside it created with O_EXCL, never
// through a link.
func (d *Dir) Create(rel string, mode os.FileMode) (*Pending, error) {
	dir, base := filepath.Split(filepath.Clean(rel))
	p := &Pending{d: d, base: base, mode: mode, tmp: ".tmp-" + base + "-" + randomSuffix()}
	err := d.cred.Do(func() error {
		if _, err := d.mkdirAll(dir, 0o755); err != nil {
			return err
		}
		parent, err := d.open(d.fd, orDot(filepath.Clean(dir)), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		fd, err := unix.Openat(parent, p.tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode.Perm()))
		if err != nil {
			unix.Close(parent)
			return err
		}
		p.parent, p.File = parent, os.NewFile(uintptr(fd), d.Path(filepath.Join(dir, p.tmp)))
		return nil
	})
	if err != nil {
		return nil, d.pathErr("create", rel, err)
	}
	return p, nil
}

// Commit syncs the file, gives it its mode (whatever the umask took) and
// renames it over its final name.
func (p *Pending) Commit() error { return p.CommitAs(p.base) }

// CommitAs is Commit under another name in the same directory, for a
// name known only once the content is (its digest).
func (p *Pending) CommitAs(base string) error {
	if base == "" || strings.ContainsRune(base, '/') || base == "." || base == ".." {
		p.Abort()
		return fmt.Errorf("%q is not a file name", base)
	}
	err := p.Sync()
	if err == nil {
		err = p.Chmod(p.mode.Perm())
	}
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = p.d.cred.Do(func() error { return unix.Renameat(p.parent, p.tmp, p.parent, base) })
	}
	if err != nil {
		p.d.cred.Do(func() error { return unix.Unlinkat(p.parent, p.tmp, 0) })
	}
	unix.Close(p.parent)
	return err
}

// Abort drops the file.
func (p *Pending) Abort() {
	p.Close()
	p.d.cred.Do(func() error { return unix.Unlinkat(p.parent, p.tmp, 0) })
	unix.Close(p.parent)
}

// WriteFile replaces rel with data as the user, atomically (see Create).
func (d *Dir) WriteFile(rel string, data []byte, mode os.FileMode) error {
	p, err := d.Create(rel, mode)
	if err != nil {
		return err
	}
	if _, err := p.Write(data); err != nil {
		p.Abort()
		return d.pathErr("write", rel, err)
	}
	return d.pathErr("write", rel, p.Commit())
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ReadFile reads rel as the user: no links, a regular file, at most limit
// bytes (a larger one is ErrTooLarge).
func (d *Dir) ReadFile(rel string, limit int64) ([]byte, error) {
	var data []byte
	err := d.cred.Do(func() error {
		fd, err := d.open(d.fd, rel, unix.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		data, err = readCapped(fd, limit)
		return err
	})
	return data, d.pathErr("read", rel, err)
}

// Remove deletes the file rel as the user; the link itself, if rel is
// one, never what it points to.
func (d *Dir) Remove(rel string) error { return d.unlink(rel, 0) }

// RemoveEmptyDir deletes the directory rel as the user if it is empty.
func (d *Dir) RemoveEmptyDir(rel string) error { return d.unlink(rel, unix.AT_REMOVEDIR) }

// unlink removes rel beneath its parent, reached without links, as the
// user.
func (d *Dir) unlink(rel string, flags int) error {
	dir, base := filepath.Split(filepath.Clean(rel))
	err := d.cred.Do(func() error {
		parent, err := d.open(d.fd, orDot(filepath.Clean(dir)), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(parent)
		return unix.Unlinkat(parent, base, flags)
	})
	return d.pathErr("remove", rel, err)
}

// RealDir is the host path of the directory rel, reached without links,
// for handing to Docker as a bind source.
func (d *Dir) RealDir(rel string) (string, error) {
	var real string
	err := d.cred.Do(func() error {
		fd, err := d.open(d.fd, orDot(rel), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		real, err = fdPath(fd)
		return err
	})
	return real, d.pathErr("open", rel, err)
}

func fdPath(fd int) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
}

// readCapped reads a regular file's fd up to limit bytes and closes it.
func readCapped(fd int, limit int64) ([]byte, error) {
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, ErrNotRegular
	}
	if st.Size > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, st.Size, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}

// ReadFile reads a file the user names (a catalog, a requirements file)
// with the user's rights: links are followed as the user would follow
// them, but it must be a regular file of at most limit bytes, opened
// without blocking so a FIFO is refused at once.
func ReadFile(c Cred, path string, limit int64) ([]byte, error) {
	var data []byte
	err := c.Do(func() error {
		// No magic links: /proc/self/fd/N is this root process's own
		// open files, which the user's rights alone would not reach.
		fd, err := openNoMagic(path, unix.O_RDONLY|unix.O_NONBLOCK)
		if err != nil {
			return err
		}
		data, err = readCapped(fd, limit)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return data, nil
}

// Access is what a bound directory must allow the user.
type Access uint32

const (
	Read      Access = unix.R_OK | unix.X_OK
	ReadWrite Access = unix.R_OK | unix.W_OK | unix.X_OK
)

// DirHandle is a directory opened as the user without links (O_PATH),
// held so that what was checked is what is used: a bind source pinned
// from it (see deploy/binds) is that directory, whatever happens to its
// path afterwards.
type DirHandle struct {
	Path     string // its host path, every link resolved
	fd       int
	Dev, Ino uint64
	UID, GID uint32
}

// FD is the descriptor, valid until Close.
func (h *DirHandle) FD() int { return h.fd }

// Close releases the descriptor.
func (h *DirHandle) Close() error { return unix.Close(h.fd) }

func newHandle(fd int) (*DirHandle, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	path, err := fdPath(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &DirHandle{Path: path, fd: fd, Dev: st.Dev, Ino: st.Ino, UID: st.Uid, GID: st.Gid}, nil
}

// OpenUserDir resolves a directory the user names (--workspace, --data)
// as the user and checks the user's rights on it. Links are followed as
// the user would follow them, magic links (/proc/PID/root, which lead
// into another mount namespace) never; the host path it resolves to is
// opened again without any link and must be the same directory, so the
// path handed on names what was checked.
func OpenUserDir(c Cred, path string, want Access) (*DirHandle, error) {
	var h *DirHandle
	err := c.Do(func() error {
		fd, err := openNoMagic(path, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		first, err := newHandle(fd)
		if err != nil {
			return err
		}
		defer first.Close()
		if err := unix.Faccessat2(fd, "", uint32(want), unix.AT_EACCESS|unix.AT_EMPTY_PATH); err != nil {
			return err
		}
		fd2, err := unix.Openat2(unix.AT_FDCWD, first.Path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		if err != nil {
			return fmt.Errorf("reopening it as %s: %w", first.Path, err)
		}
		if h, err = newHandle(fd2); err != nil {
			return err
		}
		if h.Dev != first.Dev || h.Ino != first.Ino {
			h.Close()
			return fmt.Errorf("%s is not the directory %s led to (another mount namespace?)", first.Path, path)
		}
		return nil
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return h, nil
}

// UserDir is OpenUserDir for a caller that needs only the path.
func UserDir(c Cred, path string, want Access) (string, error) {
	h, err := OpenUserDir(c, path, want)
	if err != nil {
		return "", err
	}
	h.Close()
	return h.Path, nil
}

// OpenSubdir opens the directory rel beneath d as the user, without
// links.
func (d *Dir) OpenSubdir(rel string) (*DirHandle, error) {
	var h *DirHandle
	err := d.cred.Do(func() error {
		fd, err := d.open(d.fd, orDot(rel), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		h, err = newHandle(fd)
		return err
	})
	return h, d.pathErr("open", rel, err)
}

// Lock takes an exclusive lock on the file rel (made as the user if
// missing, reached without links), waiting for another holder; unlock
// releases it. Locks serialise ds01's own work on one thing of a user's
// (a project), so they live where that user's records are.
func (d *Dir) Lock(rel string) (unlock func(), err error) {
	var fd int
	err = d.cred.Do(func() error {
		dir, _ := filepath.Split(filepath.Clean(rel))
		if _, err := d.mkdirAll(dir, 0o755); err != nil {
			return err
		}
		fd, err = d.open(d.fd, rel, unix.O_RDWR|unix.O_CREAT|unix.O_NONBLOCK, 0o600)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return ErrNotRegular
		}
		return nil
	})
	if err != nil {
		return nil, d.pathErr("lock", rel, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, d.pathErr("lock", rel, err)
	}
	return func() { unix.Flock(fd, unix.LOCK_UN); unix.Close(fd) }, nil
}

// openNoMagic opens a path the user names, following links as the user
// would but never a magic one: /proc/self/fd/N is this root process's
// own open files, /proc/PID/root another mount namespace, neither of
// which the user's rights alone would reach.
func openNoMagic(path string, flags int) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ELOOP) {
		return -1, fmt.Errorf("a link into this process or another namespace (/proc/…): %w", ErrLink)
	}
	return fd, err
}
