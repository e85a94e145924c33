// Package binds decides which host directories a ds01 container may have
// bound in, and how they are reached: resolved with the user's own rights
// (never root's, never through a link the user planted), and only from
// filesystems the host mounts nosuid,nodev wherever it reaches them, so
// that a setuid file or device node that root in the container leaves in
// a bound directory gives nothing on the host by its host path.
package binds

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	ID           int
	Major, Minor int
	Root         string   // the directory of the filesystem mounted here
	Point        string   // where it is mounted
	Options      []string // per-mount options (nosuid, nodev, ro, …)
	FSType       string
	Source       string
}

// Has reports whether the mount carries a per-mount option.
func (m Mount) Has(opt string) bool { return slices.Contains(m.Options, opt) }

// maxMountinfo bounds what is parsed: a host with a few thousand
// container mounts has well under a megabyte.
const maxMountinfo = 16 << 20

// ParseMountinfo reads /proc/self/mountinfo (proc(5)): ID, parent,
// major:minor, root, mount point, options, optional fields up to "-",
// then type, source and superblock options. Paths are octal-escaped.
func ParseMountinfo(data []byte) ([]Mount, error) {
	if len(data) > maxMountinfo {
		return nil, fmt.Errorf("mountinfo: %d bytes, more than the %d ds01 reads", len(data), maxMountinfo)
	}
	var out []Mount
	for n, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := parseLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func parseLine(line string) (Mount, error) {
	f := strings.Fields(line)
	sep := slices.Index(f, "-")
	if len(f) < 10 || sep < 6 || len(f) < sep+3 {
		return Mount{}, fmt.Errorf("%d fields, separator at %d", len(f), sep)
	}
	var m Mount
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return Mount{}, fmt.Errorf("mount ID %q", f[0])
	}
	maj, min, ok := strings.Cut(f[2], ":")
	m.Major, err = strconv.Atoi(maj)
	if err == nil {
		m.Minor, err = strconv.Atoi(min)
	}
	if !ok || err != nil {
		return Mount{}, fmt.Errorf("device %q", f[2])
	}
	if m.Root, err = unescape(f[3]); err != nil {
		return Mount{}, err
	}
	if m.Point, err = unescape(f[4]); err != nil {
		return Mount{}, err
	}
	// A namespace file's root is "net:[…]", not a path; only the mount
	// point must be one.
	if !filepath.IsAbs(m.Point) {
		return Mount{}, fmt.Errorf("mount point %q is not absolute", m.Point)
	}
	m.Options = strings.Split(f[5], ",")
	m.FSType = f[sep+1]
	m.Source, _ = unescape(f[sep+2])
	return m, nil
}

// unescape undoes the kernel's octal escapes of space, tab, newline and
// backslash (\040, \011, \012, \134).
func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("path %q: cut escape", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("path %q: bad escape", s)
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}
