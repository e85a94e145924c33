package policy

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/reference"
)

// normalize checks every field and puts names into one form (capability
// names upper case without CAP_, refs fully qualified), so that what the
// service compares is what the administrator meant.
func (p *Policy) normalize() error {
	// An empty list is no list: "refs = []" and no refs are one policy.
	for _, l := range []*[]string{&p.Bases.Registries, &p.Bases.Refs, &p.Containers.CapAdd, &p.Containers.Devices, &p.Containers.DataDirs} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return errors.Join(
		p.checkTop(),
		p.Bases.normalize(),
		p.Containers.normalize(),
		p.Limits.check(),
		p.GPUs.check(),
		p.Kubernetes.check(),
	)
}

var groupName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@ -]*\$?$`)

func (p *Policy) checkTop() error {
	var errs []error
	if p.AdminGroup != "" && !groupName.MatchString(p.AdminGroup) {
		errs = append(errs, fmt.Errorf("admin_group %q is not a group name", p.AdminGroup))
	}
	if err := absPath("audit_log", p.AuditLog); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func absPath(key, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s %q must be an absolute path without . or .. or a trailing /", key, p)
	}
	return nil
}

var registryHost = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$`)

func (b *Bases) normalize() error {
	var errs []error
	for _, r := range b.Registries {
		if !registryHost.MatchString(r) {
			errs = append(errs, fmt.Errorf("bases.registries: %q is not a registry host (host or host:port, lower case, like registry.example.org:5000)", r))
		}
	}
	for i, r := range b.Refs {
		n, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("bases.refs: %q: %w", r, err))
			continue
		}
		b.Refs[i] = reference.TagNameOnly(n).String()
	}
	return errors.Join(errs...)
}

// capabilities are the Linux capability names (capabilities(7)).
var capabilities = strings.Fields(`CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
	LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE
	SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME
	SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG
	WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE`)

// neverCaps stay dropped whatever the policy says: with them root in a
// container makes device nodes and file capabilities in bound host
// directories, the escape ds01's setuid rule closes.
var neverCaps = []string{"MKNOD", "SETFCAP"}

// systemDirs may not be data directories: binding them, or anything
// above them, gives a container the host.
var systemDirs = []string{"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var", "/var/lib/docker", "/var/run"}

func (c *Containers) normalize() error {
	var errs []error
	for i, name := range c.CapAdd {
		n := strings.TrimPrefix(strings.ToUpper(name), "CAP_")
		switch {
		case slices.Contains(neverCaps, n):
			errs = append(errs, fmt.Errorf("containers.cap_add: %s is never given: with it root in a container makes device nodes or file capabilities on bound host directories", n))
		case !slices.Contains(capabilities, n):
			errs = append(errs, fmt.Errorf("containers.cap_add: %q is not a Linux capability (ALL is not offered: name each one)", name))
		}
		c.CapAdd[i] = n
	}
	for _, d := range c.Devices {
		if err := absPath("containers.devices", d); err != nil {
			errs = append(errs, err)
		} else if !strings.HasPrefix(d, "/dev/") {
			errs = append(errs, fmt.Errorf("containers.devices: %q is not under /dev", d))
		} else if strings.HasPrefix(d, "/dev/nvidia") {
			errs = append(errs, fmt.Errorf("containers.devices: %q: GPUs are granted per container by the gpus limits, never as devices for everyone", d))
		}
	}
	for _, d := range c.DataDirs {
		if err := absPath("containers.data_dirs", d); err != nil {
			errs = append(errs, err)
		} else if slices.Contains(systemDirs, d) {
			errs = append(errs, fmt.Errorf("containers.data_dirs: %s is a system directory; name the data directories themselves (users' homes and workspaces are bound by their own rule)", d))
		}
	}
	if _, err := c.Parent(1722830498, 1722830498, "h-baker"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var (
	sliceName  = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+\.slice$`)
	cgroupPath = regexp.MustCompile(`^(/[A-Za-z0-9:_.@-]+)+$`)
)

func (l *Limits) check() error {
	errs := []error{checkResources("limits", Resources{l.Memory, l.CPUs, l.PIDs})}
	for login, r := range l.Users {
		if login == "" {
			errs = append(errs, errors.New("limits.users: an entry has an empty login"))
		}
		errs = append(errs, checkResources(fmt.Sprintf("limits.users.%q", login), r))
	}
	return errors.Join(errs...)
}

func checkResources(key string, r Resources) error {
	var errs []error
	if !(r.CPUs >= 0) || math.IsInf(r.CPUs, 0) {
		errs = append(errs, fmt.Errorf("%s.cpus %v must be a number of CPUs, 0 for no limit", key, r.CPUs))
	}
	if r.PIDs < 0 {
		errs = append(errs, fmt.Errorf("%s.pids %d must be 0 (no limit) or more", key, r.PIDs))
	}
	return errors.Join(errs...)
}

func (g *GPUs) check() error {
	var errs []error
	if g.Default < 0 {
		errs = append(errs, fmt.Errorf("gpus.default %d must be 0 or more", g.Default))
	}
	for _, m := range []struct {
		key string
		m   map[string]int
	}{{"gpus.users", g.Users}, {"gpus.groups", g.Groups}} {
		for k, n := range m.m {
			if k == "" || n < 0 {
				errs = append(errs, fmt.Errorf("%s: %q = %d: a name and a count of 0 or more", m.key, k, n))
			}
		}
	}
	if g.Inventory != "" && !filepath.IsAbs(g.Inventory) {
		errs = append(errs, fmt.Errorf("gpus.inventory: the command %q must be an absolute path (root runs it; no PATH lookup)", g.Inventory))
	}
	return errors.Join(errs...)
}
