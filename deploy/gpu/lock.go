package gpu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LockFile is the lock's name in the directory given to Lock.
const LockFile = "gpu.lock"

// Lock takes the server's one GPU lock: an exclusive flock on LockFile in
// dir (for root, /run/ds01), so that deploys by root directly, and the
// service, allocate one after another. dir must be the caller's and
// writable by no one else, or another user could hold the lock forever.
// Cancelling ctx stops the wait.
func Lock(ctx context.Context, dir string) (unlock func(), err error) {
	if err := checkLockDir(dir); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, LockFile)
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("GPU lock %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("GPU lock %s is not a regular file", p)
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(fd, unix.LOCK_UN); unix.Close(fd) }, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			unix.Close(fd)
			return nil, fmt.Errorf("GPU lock %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			unix.Close(fd)
			return nil, fmt.Errorf("waiting for the GPU lock %s (another deploy is allocating): %w", p, ctx.Err())
		case <-time.After(wait):
			wait = min(2*wait, 50*time.Millisecond)
		}
	}
}

// checkLockDir refuses a lock directory another user could replace the
// lock in.
func checkLockDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("GPU lock directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("GPU lock directory %s is not a directory", dir)
	case !ok || st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("GPU lock directory %s is not owned by this user (uid %d); make it with mkdir -m 0755", dir, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("GPU lock directory %s is writable by others (%v); chmod go-w it", dir, fi.Mode().Perm())
	}
	return nil
}

// Reserve allocates under the lock in dir: it takes the lock, reads the
// holdings afresh with held (docker ps of ds01's containers, through
// Holdings), and allocates. The caller keeps the lock until the container
// carrying the allocation's labels exists (or its create failed), then
// calls release; the next Reserve then sees the new holding.
func Reserve(ctx context.Context, dir string, a Ask, held func(context.Context) ([]Holding, error)) (al Allocation, release func(), err error) {
	unlock, err := Lock(ctx, dir)
	if err != nil {
		return Allocation{}, nil, err
	}
	hs, err := held(ctx)
	if err != nil {
		unlock()
		return Allocation{}, nil, fmt.Errorf("reading who holds which GPU: %w", err)
	}
	al, err = Allocate(a, hs)
	if err != nil {
		unlock()
		return Allocation{}, nil, err
	}
	return al, unlock, nil
}
