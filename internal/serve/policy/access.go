package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/distribution/reference"
)

// Parent is the cgroup parent of a user's containers: the template with
// {uid}, {gid} and {name} replaced. The result must be a systemd slice
// name (ds01-h-baker.slice) or an absolute cgroupfs path.
func (c Containers) Parent(uid, gid uint32, name string) (string, error) {
	s := strings.NewReplacer("{uid}", strconv.FormatUint(uint64(uid), 10), "{gid}", strconv.FormatUint(uint64(gid), 10), "{name}", name).Replace(c.CgroupParent)
	if strings.ContainsAny(s, "{}") || !sliceName.MatchString(s) && !cgroupPath.MatchString(s) {
		return "", fmt.Errorf("containers.cgroup_parent %q gives %q: it must give a systemd slice name (ds01-{name}.slice) or an absolute cgroup path, with only {uid}, {gid} and {name} replaced", c.CgroupParent, s)
	}
	return s, nil
}

// CapAllowed reports whether the policy lets a container add capability
// name (with or without CAP_, any case).
func (c Containers) CapAllowed(name string) bool {
	return slices.Contains(c.CapAdd, strings.TrimPrefix(strings.ToUpper(name), "CAP_"))
}

// DeviceAllowed reports whether the host device path may be given to a
// container.
func (c Containers) DeviceAllowed(path string) bool {
	return slices.Contains(c.Devices, filepath.Clean(path))
}

// DataDir is the listed data directory that holds path (resolved by the
// caller first: symlinks are not this package's to follow), and whether
// there is one.
func (c Containers) DataDir(path string) (string, bool) {
	path = filepath.Clean(path)
	for _, d := range c.DataDirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return d, true
		}
	}
	return "", false
}

// BaseAllowed reports whether ref (any form Docker takes) may be built
// on: an image of the catalog when the catalog is allowed, one of the
// listed refs, or any image of a listed registry.
func (b Bases) BaseAllowed(ref string, inCatalog bool) bool {
	if inCatalog && b.Catalog {
		return true
	}
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return false
	}
	if slices.Contains(b.Registries, reference.Domain(n)) {
		return true
	}
	return slices.Contains(b.Refs, reference.TagNameOnly(n).String())
}

// For is the limits on login's containers together: the user's entry
// where it sets a value, the default otherwise.
func (l Limits) For(login string) Resources {
	r := Resources{Memory: l.Memory, CPUs: l.CPUs, PIDs: l.PIDs}
	u, ok := l.Users[login]
	if !ok {
		return r
	}
	if u.Memory != 0 {
		r.Memory = u.Memory
	}
	if u.CPUs != 0 {
		r.CPUs = u.CPUs
	}
	if u.PIDs != 0 {
		r.PIDs = u.PIDs
	}
	return r
}

// Limit is how many GPUs login, a member of groups, may hold at once:
// the login's own entry; else the largest entry of its groups; else the
// default.
func (g GPUs) Limit(login string, groups []string) int {
	if n, ok := g.Users[login]; ok {
		return n
	}
	best, found := 0, false
	for _, grp := range groups {
		if n, ok := g.Groups[grp]; ok && (!found || n > best) {
			best, found = n, true
		}
	}
	if found {
		return best
	}
	return g.Default
}

// IsAdmin reports whether one of groups is the admin group.
func (p Policy) IsAdmin(groups []string) bool {
	return p.AdminGroup != "" && slices.Contains(groups, p.AdminGroup)
}
