// Package asuser touches files for a user with that user's own
// credentials, so that the kernel refuses whatever the user could not do
// themselves: when ds01 runs as root for a user (sudo, --user, the
// service), a path in that user's home or one the user names is the
// user's input, and root following it would lend them root's rights.
//
// A root process takes the user's filesystem identity on one locked OS
// thread (setgroups, setfsgid, setfsuid: each changes only the calling
// thread), does the work there and restores root's before the thread is
// used again; a thread that cannot be restored is never reused. Paths in
// places the user can write are resolved beneath a directory descriptor
// with openat2's RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, files are opened
// without blocking, must be regular and are read up to a cap.
package asuser

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"

	"golang.org/x/sys/unix"
)

// Cred is whose rights the file work gets.
type Cred struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups, from NSS
}

// Drops reports whether doing work as c changes anything: only a root
// process acting for another UID takes on the user's identity; a process
// already running as the user has its rights and no others.
func (c Cred) Drops() bool { return os.Geteuid() == 0 && c.UID != 0 }

// Do runs fn with c's filesystem identity. fn must not start goroutines
// that touch files: they would run on other threads, as root.
func (c Cred) Do(fn func() error) error {
	if !c.Drops() {
		return fn()
	}
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			// An unrestored thread dies with this goroutine instead of
			// going back to the scheduler with the user's identity.
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		if err := c.become(); err != nil {
			restored = restore() == nil
			done <- result{fmt.Errorf("taking the identity of UID %d: %w", c.UID, err)}
			return
		}
		err := fn()
		if rerr := restore(); rerr != nil {
			done <- result{errors.Join(err, fmt.Errorf("restoring root's identity: %w", rerr))}
			return
		}
		restored = true
		done <- result{err}
	}()
	return (<-done).err
}

func (c Cred) become() error {
	groups := make([]int, 0, len(c.Groups)+1)
	for _, g := range append([]uint32{c.GID}, c.Groups...) {
		if !slices.Contains(groups, int(g)) {
			groups = append(groups, int(g))
		}
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	unix.Setfsgid(int(c.GID))
	unix.Setfsuid(int(c.UID))
	// setfsuid and setfsgid report no error; ask what they left.
	if cur, _ := unix.SetfsuidRetUid(-1); cur != int(c.UID) {
		return fmt.Errorf("setfsuid(%d) left fsuid %d", c.UID, cur)
	}
	if cur, _ := unix.SetfsgidRetGid(-1); cur != int(c.GID) {
		return fmt.Errorf("setfsgid(%d) left fsgid %d", c.GID, cur)
	}
	return nil
}

// restore gives the thread back root's filesystem identity and groups.
func restore() error {
	unix.Setfsuid(os.Geteuid())
	unix.Setfsgid(os.Getegid())
	if cur, _ := unix.SetfsuidRetUid(-1); cur != os.Geteuid() {
		return fmt.Errorf("fsuid is still %d", cur)
	}
	if cur, _ := unix.SetfsgidRetGid(-1); cur != os.Getegid() {
		return fmt.Errorf("fsgid is still %d", cur)
	}
	return unix.Setgroups(rootGroups)
}

// rootGroups is the process's supplementary groups at start, before any
// thread took a user's; os.Getgroups later would read this thread's.
var rootGroups = func() []int {
	g, _ := os.Getgroups()
	return g
}()
