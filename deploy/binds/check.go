package binds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrSetuid is a bound directory on a filesystem the host reaches without
// nosuid or nodev somewhere.
var ErrSetuid = errors.New("the setuid rule")

// Exposure is a mount through which the host reaches a bound directory,
// or something beneath it, without nosuid or nodev.
type Exposure struct {
	Dir   string // the bound directory
	Mount Mount
}

func (e Exposure) missing() string {
	var m []string
	for _, o := range []string{"nosuid", "nodev"} {
		if !e.Mount.Has(o) {
			m = append(m, o)
		}
	}
	return strings.Join(m, ",")
}

// under reports whether p is base or lies beneath it.
func under(p, base string) bool {
	if base == "/" {
		return true
	}
	return p == base || strings.HasPrefix(p, base+"/")
}

// reaching is the mount dir is reached through: the one with the longest
// mount point above it, the last of those (a later mount covers an
// earlier one at the same point).
func reaching(mounts []Mount, dir string) (Mount, bool) {
	best, found := Mount{}, false
	for _, m := range mounts {
		if under(dir, m.Point) && (!found || len(m.Point) >= len(best.Point)) {
			best, found = m, true
		}
	}
	return best, found
}

type fsDir struct {
	major, minor int
	path         string // within the filesystem
}

// bound is every filesystem directory a recursive bind of dir carries:
// dir itself and each mount beneath it.
func bound(mounts []Mount, dir string) ([]fsDir, error) {
	m, ok := reaching(mounts, dir)
	if !ok {
		return nil, fmt.Errorf("%s: no mount reaches it in /proc/self/mountinfo", dir)
	}
	rel, err := filepath.Rel(m.Point, dir)
	if err != nil {
		return nil, err
	}
	out := []fsDir{{m.Major, m.Minor, filepath.Join(m.Root, rel)}}
	for _, sub := range mounts {
		if sub.Point != dir && under(sub.Point, dir) {
			out = append(out, fsDir{sub.Major, sub.Minor, sub.Root})
		}
	}
	return out, nil
}

// Exposures lists the mounts through which the host reaches dir, or any
// directory a bind of dir carries, without nosuid or nodev: each is a way
// to run, by its host path, a setuid file or device node made inside the
// container. Every mount of the same filesystem whose root overlaps the
// directory counts, not only the one dir was named through: a setuid
// file is setuid wherever its filesystem is mounted without nosuid.
func Exposures(mounts []Mount, dir string) ([]Exposure, error) {
	dirs, err := bound(mounts, dir)
	if err != nil {
		return nil, err
	}
	var out []Exposure
	seen := map[int]bool{}
	for _, d := range dirs {
		for _, m := range mounts {
			if m.Major != d.major || m.Minor != d.minor || seen[m.ID] {
				continue
			}
			if !under(d.path, m.Root) && !under(m.Root, d.path) {
				continue
			}
			if !m.Has("nosuid") || !m.Has("nodev") {
				seen[m.ID] = true
				out = append(out, Exposure{Dir: dir, Mount: m})
			}
		}
	}
	return out, nil
}

// CheckHost applies the setuid rule to host directories about to be bound
// into a container for a user who is not root-equivalent.
func CheckHost(dirs []string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading the host's mounts for the setuid rule: %w", err)
	}
	mounts, err := ParseMountinfo(data)
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		ex, err := Exposures(mounts, dir)
		if err != nil {
			return err
		}
		if len(ex) > 0 {
			return refusal(ex)
		}
	}
	return nil
}

func refusal(ex []Exposure) error {
	var where []string
	for _, e := range ex {
		where = append(where, fmt.Sprintf("%s (%s) at %s without %s", e.Mount.Source, e.Mount.FSType, e.Mount.Point, e.missing()))
	}
	return fmt.Errorf("%w: %s would be bound into the container, and the host mounts its filesystem %s: a setuid file or device node that root in the container (you have sudo there) leaves in it would work on the host by its path. "+
		"The administrator's fix: mount that filesystem nosuid,nodev (the usual hardening of /home and data volumes: its line in /etc/fstab, then mount -o remount,nosuid,nodev); "+
		"or bind a directory on such a filesystem (--workspace, --data, --models). Root itself may accept the risk with --accept-setuid-risk (logged)",
		ErrSetuid, ex[0].Dir, strings.Join(where, "; "))
}
