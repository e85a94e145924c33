package peer

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Listen makes the service's socket at path, mode 0666 (anyone may
// connect: the kernel says who did). A missing parent directory is made
// 0755; a parent that others could write is refused, as they could put
// their own socket in its place. An existing path is replaced only when
// it is a socket nothing answers on (left by a service that died);
// anything else there is refused, never removed.
func Listen(path string) (Listener, error) {
	if !filepath.IsAbs(path) {
		return Listener{}, fmt.Errorf("socket %s: the path must be absolute", path)
	}
	if err := parentDir(filepath.Dir(path)); err != nil {
		return Listener{}, err
	}
	if err := removeStale(path); err != nil {
		return Listener{}, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return Listener{}, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return Listener{}, fmt.Errorf("socket %s: %w", path, err)
	}
	return Listener{UnixListener: l}, nil
}

func parentDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("socket directory %s: %w", dir, err)
		}
		// MkdirAll's mode is cut by the umask; the directory must be
		// searchable by every user who connects.
		return os.Chmod(dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory (a symbolic link is refused too)", dir)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uint32(os.Geteuid()) || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("socket directory %s is owned by UID %d with mode %v: only the service's own user may write the directory its socket is in (another could put their socket there); use a directory like /run/ds01", dir, st.Uid, fi.Mode().Perm())
	}
	return nil
}

// removeStale removes path when it is a socket left behind: one that
// refuses connections. A live one means another service is running.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket %s: the path exists and is not a socket (%v); ds01 removes only a stale socket, so move it away yourself", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("socket %s: another service answers on it; stop it first", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("socket %s: cannot tell whether it is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("socket %s: removing the stale socket: %w", path, err)
	}
	return nil
}

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// FromSystemd is the socket systemd passed by socket activation
// (LISTEN_PID is this process, LISTEN_FDS at least 1; the first one is
// used), and false when there is none. The variables are cleared so that
// children do not take the socket for theirs.
func FromSystemd() (Listener, bool, error) {
	pid, fds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if pid == "" || fds == "" {
		return Listener{}, false, nil
	}
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	if pid != strconv.Itoa(os.Getpid()) {
		return Listener{}, false, nil
	}
	if n, err := strconv.Atoi(fds); err != nil || n < 1 {
		return Listener{}, false, fmt.Errorf("socket activation: LISTEN_FDS=%q is not a positive number", fds)
	}
	syscall.CloseOnExec(listenFDsStart)
	f := os.NewFile(listenFDsStart, "systemd-socket")
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return Listener{}, false, fmt.Errorf("socket activation: descriptor %d: %w", listenFDsStart, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return Listener{}, false, fmt.Errorf("socket activation: descriptor %d is a %s socket, not a unix one (the socket unit must use ListenStream=/run/ds01/ds01.sock)", listenFDsStart, l.Addr().Network())
	}
	// systemd made the socket and removes it; ds01 must not unlink it.
	ul.SetUnlinkOnClose(false)
	return Listener{UnixListener: ul}, true, nil
}
