// Package policy is the administrator's policy file for ds01's service:
// which bases, capabilities, host namespaces, devices, data directories,
// cgroup slices, resource and GPU limits users get, where the audit log
// goes and who administers. It is TOML, decoded strictly (an unknown or
// misspelt key is an error naming it, so a typo never silently loosens or
// drops a rule), defaulted, and validated whole before the service uses
// any of it. Deciding a request against it is the service's; this package
// gives the typed values.
package policy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"
)

// Policy is a parsed, validated policy file.
type Policy struct {
	// AdminGroup's members administer the service as root would; ""
	// leaves that to root alone.
	AdminGroup string `toml:"admin_group"`
	// AuditLog is the file the service appends one JSON line per request
	// to.
	AuditLog string `toml:"audit_log"`
	// IdleRelease is how long a container may hold GPUs while it does
	// nothing before they are taken back; 0 never.
	IdleRelease Duration `toml:"idle_release"`

	Bases      Bases      `toml:"bases"`
	Containers Containers `toml:"containers"`
	Limits     Limits     `toml:"limits"`
	GPUs       GPUs       `toml:"gpus"`
	Kubernetes Kubernetes `toml:"kubernetes"`
}

// Bases are the images users may build on, besides their own.
type Bases struct {
	Catalog    bool     `toml:"catalog"`    // the AIME catalog's images
	Registries []string `toml:"registries"` // any image of these registries (host[:port])
	Refs       []string `toml:"refs"`       // these images (normalized: docker.io/library/debian:bookworm)
}

// Containers is what a user's container may have beyond ds01's defaults.
type Containers struct {
	CapAdd      []string `toml:"cap_add"` // capability names without CAP_, upper case
	HostPID     bool     `toml:"host_pid"`
	HostNetwork bool     `toml:"host_network"`
	HostIPC     bool     `toml:"host_ipc"`
	Devices     []string `toml:"devices"`   // host device paths (GPUs are granted apart)
	DataDirs    []string `toml:"data_dirs"` // host directories users may bind (what they can read)
	// CgroupParent is the template of each user's cgroup parent:
	// {uid}, {gid} and {name} (the sanitized user name) are replaced.
	CgroupParent string `toml:"cgroup_parent"`
}

// Resources are limits on all of one user's containers together (their
// slice); zero is no limit.
type Resources struct {
	Memory Bytes   `toml:"memory"`
	CPUs   float64 `toml:"cpus"`
	PIDs   int64   `toml:"pids"`
}

// Limits are the default Resources and per-login overrides.
type Limits struct {
	Memory Bytes                `toml:"memory"`
	CPUs   float64              `toml:"cpus"`
	PIDs   int64                `toml:"pids"`
	Users  map[string]Resources `toml:"users"`
}

// GPUs is how many GPUs a user may hold at once, and how the service
// learns what the machine has.
type GPUs struct {
	Default  int            `toml:"default"`   // per user without an entry
	Users    map[string]int `toml:"users"`     // per login
	Groups   map[string]int `toml:"groups"`    // per group name
	AllowAll bool           `toml:"allow_all"` // may a user ask for every GPU (--gpus all)
	// Inventory is the nvidia-smi to run, an absolute path: ds01 gives it
	// nvidia-smi's own arguments (gpu.QueryArgs, gpu.ListArgs), which a
	// stand-in must take; one command and its parser agree on the fields.
	Inventory string `toml:"inventory"`
}

// Default is the policy of an empty file: catalog bases, no extras, the
// user's ds01 slice, one GPU each, the audit log under /var/log/ds01.
func Default() Policy {
	return Policy{
		AuditLog:   "/var/log/ds01/audit.log",
		Bases:      Bases{Catalog: true},
		Containers: Containers{CgroupParent: "ds01-{name}.slice"},
		GPUs: GPUs{
			Default:   1,
			Inventory: "/usr/bin/nvidia-smi",
		},
		Kubernetes: Kubernetes{GPUResource: "nvidia.com/gpu"},
	}
}

// Parse decodes a policy file over Default and validates it.
func Parse(data []byte) (Policy, error) {
	p := Default()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&p)
	if err != nil {
		// Not pe.ErrorWithPosition: in toml v1.6.0 it panics on some
		// inputs (an unterminated string before "\r\n"; the fuzz
		// target's find, kept in testdata/fuzz).
		return Policy{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return Policy{}, fmt.Errorf("unknown key %s: the policy has no such setting (misspelt? see the commented example policy.toml)", strings.Join(keys, ", "))
	}
	if err := p.normalize(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// maxFile bounds a policy file.
const maxFile = 1 << 20

// Load reads the policy at path: a regular file owned by root and
// writable by no one else, as whoever can write it decides what every
// user may do.
func Load(path string) (Policy, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return Policy{}, fmt.Errorf("policy %s is not a regular file", path)
	case st.Uid != 0 || fi.Mode().Perm()&0o022 != 0:
		return Policy{}, fmt.Errorf("policy %s is owned by UID %d with mode %v: it must be root's and writable by root alone (chown root:root, chmod 0644)", path, st.Uid, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	if len(data) > maxFile {
		return Policy{}, fmt.Errorf("policy %s is over %d bytes", path, maxFile)
	}
	p, err := Parse(data)
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}
