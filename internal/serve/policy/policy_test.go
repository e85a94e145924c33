package policy

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestEmptyIsDefault(t *testing.T) {
	p, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, Default()) {
		t.Errorf("empty policy %+v\nwant %+v", p, Default())
	}
}

// The shipped example documents every default: as it is, and with every
// setting uncommented, it is the default policy.
func TestShippedExampleIsTheDefaults(t *testing.T) {
	data, err := os.ReadFile("../../../packaging/policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("as shipped: %v", err)
	}
	if !reflect.DeepEqual(p, Default()) {
		t.Errorf("as shipped: %+v", p)
	}
	// Uncomment every "# key = value" line but those of the commented
	// example tables ("# [gpus.users]" up to the next blank line).
	setting := regexp.MustCompile(`^# ([a-z_]+ = .*)$`)
	var out []string
	n, inExample := 0, false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "# ["):
			inExample = true
		case line == "":
			inExample = false
		case !inExample && setting.MatchString(line):
			line, n = setting.ReplaceAllString(line, "$1"), n+1
		}
		out = append(out, line)
	}
	if n != 27 {
		t.Fatalf("%d settings found commented out, want all 27; is the example still written as documented?", n)
	}
	uncommented := strings.Join(out, "\n")
	p, err = Parse([]byte(uncommented))
	if err != nil {
		t.Fatalf("uncommented: %v\n%s", err, uncommented)
	}
	if !reflect.DeepEqual(p, Default()) {
		t.Errorf("uncommented example %+v\nwant %+v", p, Default())
	}
}

func TestFull(t *testing.T) {
	data, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(p.IdleRelease) != 2*time.Hour || p.Limits.Memory != 64<<30 || p.Bases.Catalog {
		t.Errorf("decoded %+v", p)
	}
	if want := []string{"SYS_PTRACE", "NET_RAW"}; !reflect.DeepEqual(p.Containers.CapAdd, want) {
		t.Errorf("cap_add %v, want %v", p.Containers.CapAdd, want)
	}
	if !p.Containers.CapAllowed("cap_sys_ptrace") || p.Containers.CapAllowed("SYS_ADMIN") {
		t.Error("CapAllowed")
	}
	if got, _ := p.Containers.Parent(1722830498, 7, "h-baker"); got != "user-1722830498.slice" {
		t.Errorf("cgroup parent %q", got)
	}
	for _, tt := range []struct {
		ref     string
		catalog bool
		want    bool
	}{
		{"debian:bookworm", false, true},
		{"docker.io/library/debian:bookworm", false, true},
		{"debian", false, false}, // :latest is not :bookworm
		{"registry.example.org:5000/any/thing:v1", false, true},
		{"registry.example.org/any/thing:v1", false, false},
		{"aimehub/pytorch-2.5.1-cuda12.1", true, false}, // the catalog is off
		{"nvcr.io/nvidia/pytorch:24.01-py3", false, true},
	} {
		if got := p.Bases.BaseAllowed(tt.ref, tt.catalog); got != tt.want {
			t.Errorf("BaseAllowed(%s, %v) = %v", tt.ref, tt.catalog, got)
		}
	}
	if d, ok := p.Containers.DataDir("/scratch/run1"); !ok || d != "/scratch" {
		t.Errorf("DataDir /scratch/run1: %q %v", d, ok)
	}
	if _, ok := p.Containers.DataDir("/scratchy"); ok {
		t.Error("/scratchy is inside /scratch")
	}
	if r := p.Limits.For("h.baker@hertie-school.lan"); r.Memory != 128<<30 || r.CPUs != 8 || r.PIDs != 4096 {
		t.Errorf("limits for h.baker: %+v", r)
	}
	for _, tt := range []struct {
		login  string
		groups []string
		want   int
	}{
		{"h.baker@hertie-school.lan", []string{"vision"}, 4},
		{"a", []string{"ml-lab", "vision"}, 3},
		{"a", []string{"ml-lab"}, 2},
		{"a", nil, 1},
	} {
		if got := p.GPUs.Limit(tt.login, tt.groups); got != tt.want {
			t.Errorf("GPU limit %s %v = %d, want %d", tt.login, tt.groups, got, tt.want)
		}
	}
	if !p.IsAdmin([]string{"x", "ds01-admin"}) || p.IsAdmin([]string{"x"}) || Default().IsAdmin([]string{""}) {
		t.Error("IsAdmin")
	}
}

func TestRefused(t *testing.T) {
	tests := []struct{ name, policy, want string }{
		{"typo at the top", `audit_logg = "/x"`, "unknown key audit_logg"},
		{"typo in a table", "[containers]\nhost_pdi = true", "unknown key containers.host_pdi"},
		{"unknown table", "[gpu]\ndefault = 2", "unknown key gpu"},
		{"wrong type", "[containers]\nhost_pid = \"yes\"", "host_pid"},
		{"duplicate key", "[gpus]\ndefault = 1\ndefault = 2", "default"},
		{"relative audit log", `audit_log = "audit.log"`, "absolute path"},
		{"bad size", "[limits]\nmemory = \"lots\"", "size \"lots\""},
		{"negative duration", `idle_release = "-1h"`, "negative"},
		{"NaN cpus", "[limits]\ncpus = nan", "cpus"},
		{"negative pids", "[limits.users.x]\npids = -1", "pids -1"},
		{"unknown capability", "[containers]\ncap_add = [\"ALL\"]", "not a Linux capability"},
		{"mknod", "[containers]\ncap_add = [\"CAP_MKNOD\"]", "MKNOD is never given"},
		{"root as data dir", "[containers]\ndata_dirs = [\"/\"]", "system directory"},
		{"etc as data dir", "[containers]\ndata_dirs = [\"/etc\"]", "system directory"},
		{"unclean data dir", "[containers]\ndata_dirs = [\"/data/../etc\"]", "absolute path"},
		{"gpu as device", "[containers]\ndevices = [\"/dev/nvidia0\"]", "GPUs are granted"},
		{"device outside /dev", "[containers]\ndevices = [\"/etc/shadow\"]", "not under /dev"},
		{"cgroup with slash in name", "[containers]\ncgroup_parent = \"a/{name}.slice\"", "cgroup_parent"},
		{"cgroup unknown placeholder", "[containers]\ncgroup_parent = \"{login}.slice\"", "cgroup_parent"},
		{"bad registry", "[bases]\nregistries = [\"https://x\"]", "not a registry host"},
		{"bad ref", "[bases]\nrefs = [\"UPPER:case\"]", "bases.refs"},
		{"negative gpus", "[gpus.groups]\nlab = -1", "gpus.groups"},
		{"relative inventory", "[gpus]\ninventory = \"nvidia-smi\"", "absolute path"},
		{"namespace placeholder", "[kubernetes]\nnamespace = \"ds01-{login}\"", "{login} is not one of"},
		{"namespace not a name", "[kubernetes]\nnamespace = \"DS01_{name}\"", "does not make a namespace name"},
		{"relative workspace path", "[kubernetes]\nworkspace_path = \"srv/{name}\"", "absolute path"},
		{"claim and path", "[kubernetes]\nworkspace_claim = \"ws-{name}\"\nworkspace_path = \"/srv/{name}/{project}\"", "not both"},
		{"claim with project", "[kubernetes]\nworkspace_claim = \"ws-{project}\"", "{project} is not one of"},
		{"gpu resource", "[kubernetes]\ngpu_resource = \"nvidia gpu\"", "gpu_resource"},
		{"negative max gpus", "[kubernetes]\nmax_gpus = -2", "max_gpus -2"},
		{"inventory with arguments", "[gpus]\ninventory = [\"/usr/bin/nvidia-smi\", \"-L\"]", "inventory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.policy))
			if err == nil {
				t.Fatalf("Parse succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

func TestLoadRefusesWritableByOthers(t *testing.T) {
	path := t.TempDir() + "/policy.toml"
	os.WriteFile(path, []byte("[gpus]\ndefault = 2\n"), 0o666)
	os.Chmod(path, 0o666)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "writable by root alone") {
		t.Errorf("Load of a 0666 policy: %v", err)
	}
	os.Chmod(path, 0o644)
	p, err := Load(path)
	if os.Geteuid() == 0 && (err != nil || p.GPUs.Default != 2) {
		t.Errorf("Load: %+v %v", p.GPUs, err)
	}
}
