package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUntrustedCache is a cache someone besides its user could write.
var ErrUntrustedCache = errors.New("ds01's cache must be writable by the user running ds01 alone")

// CheckTrust refuses a cache that anyone but the user running ds01 could
// have written: every user's images are built from it (a files index, a
// package layer), so a second writer could plant what lands in another
// user's image. It checks every directory and file in the cache (owned by
// this user, writable by no one else; group write only for root's own
// group 0), every directory above it (owned by root or this user, and
// not writable by others unless sticky, as /tmp is), and every link on
// the way (owned by root or this user).
func CheckTrust(dir string) error {
	uid := uint32(os.Geteuid())
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := checkLinks(abs, uid); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, fs.ErrNotExist) {
		// Not made yet: what will hold it is checked.
		for errors.Is(err, fs.ErrNotExist) && abs != "/" {
			abs = filepath.Dir(abs)
			real, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			return fmt.Errorf("cache %s: %w", dir, err)
		}
		return checkAncestors(real, uid, true)
	}
	if err != nil {
		return fmt.Errorf("cache %s: %w", dir, err)
	}
	if err := checkAncestors(real, uid, false); err != nil {
		return err
	}
	return filepath.WalkDir(real, func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a concurrent install's directory, removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("checking cache %s: %w", real, err)
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a temporary file renamed meanwhile
			}
			return err
		}
		return checkEntry(real, p, fi, uid)
	})
}

// checkAncestors checks the directories above a cache at real, and real
// itself when self is set (it will hold a cache not made yet).
func checkAncestors(real string, uid uint32, self bool) error {
	p := real
	if !self {
		p = filepath.Dir(real)
	}
	for ; ; p = filepath.Dir(p) {
		if err := checkAncestor(p, uid); err != nil {
			return err
		}
		if p == "/" {
			return nil
		}
	}
}

func owner(fi fs.FileInfo) (uid, gid uint32) {
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

func untrusted(dir, what, fix string) error {
	return fmt.Errorf("%w: %s (rule: one writer, so that no one can plant what other users' images are built from); fix: %s, or set DS01_CACHE to a directory only you can write",
		ErrUntrustedCache, what, fix)
}

func checkEntry(root, p string, fi fs.FileInfo, uid uint32) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil // never followed: every read opens without links
	}
	fu, fg := owner(fi)
	if fu != uid {
		return untrusted(root, fmt.Sprintf("%s is owned by UID %d, not by you (UID %d)", p, fu, uid),
			fmt.Sprintf("remove the cache (rm -r %s) unless you know what is in it, or chown -R %d %s", root, uid, root))
	}
	perm := fi.Mode().Perm()
	if perm&0o002 != 0 || (perm&0o020 != 0 && !(uid == 0 && fg == 0)) {
		return untrusted(root, fmt.Sprintf("%s (mode %v, group %d) can be written by others", p, fi.Mode(), fg),
			fmt.Sprintf("chmod -R go-w %s", root))
	}
	return nil
}

func checkAncestor(p string, uid uint32) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("checking the directories above the cache: %w", err)
	}
	fu, _ := owner(fi)
	sticky := fi.Mode()&fs.ModeSticky != 0
	switch {
	case fu != 0 && fu != uid:
		return untrusted(p, fmt.Sprintf("%s, above the cache, is owned by UID %d, who could replace the cache", p, fu), "keep the cache under directories owned by root or you")
	case fi.Mode().Perm()&0o022 != 0 && !sticky:
		return untrusted(p, fmt.Sprintf("%s, above the cache, (mode %v) can be written by others, who could replace the cache", p, fi.Mode()), "chmod go-w "+p)
	}
	return nil
}

// checkLinks checks the links among the components of abs: whoever owns
// a link chooses where the cache is.
func checkLinks(abs string, uid uint32) error {
	p := "/"
	for _, part := range strings.Split(abs, "/") {
		if part == "" {
			continue
		}
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil // made by OpenCache, or reported by EvalSymlinks
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if fu, _ := owner(fi); fu != 0 && fu != uid {
			return untrusted(p, fmt.Sprintf("the link %s on the way to the cache is owned by UID %d", p, fu), "name the cache by a path without others' links")
		}
	}
	return nil
}
