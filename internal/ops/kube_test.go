package ops

import (
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/serve/policy"
	"github.com/ds01/ds01/passwd"
)

func TestPushedRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		rec       record.Record
		want, err string
	}{
		{"never pushed", record.Record{Project: "p", BuiltAt: t0}, "", "has not been pushed to a registry"},
		{"pushed", record.Record{Project: "p", BuiltAt: t0, Pushed: []record.Pushed{
			{Repo: "old.lab/x", Digest: "sha256:" + strings.Repeat("00", 32), At: t0.Add(time.Minute)},
			{Repo: "registry.lab:5000/ds01-1000/p", Digest: d, At: t0.Add(time.Hour)},
		}}, "registry.lab:5000/ds01-1000/p@" + d, ""},
		{"made again since", record.Record{Project: "p", BuiltAt: t0.Add(2 * time.Hour), Pushed: []record.Pushed{
			{Repo: "registry.lab:5000/ds01-1000/p", Digest: d, At: t0.Add(time.Hour)},
		}}, "", "after its last push"},
		{"pulled here", record.Record{Project: "p", BuiltAt: t0.Add(2 * time.Hour), Pulled: &record.Pushed{Repo: "ubuntu", Digest: d, At: t0}},
			"docker.io/library/ubuntu@" + d, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pushedRef(tc.rec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "run ds01 image push p first") {
					t.Fatalf("error %v, want %q and the push advice", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("%q %v, want %q", got, err, tc.want)
			}
		})
	}
}

func TestKubeSpec(t *testing.T) {
	id := identity.Identity{Login: "h.baker@hertie-school.lan", Name: "h-baker", UID: 1722830498, GID: 1722800513,
		Groups: []passwd.HostGroup{{Name: "ml-lab", GID: 1722801000}}, Known: true}
	o := &Ops{Kube: policy.Kubernetes{GPUResource: "nvidia.com/gpu", WorkspaceClaim: "ws-{name}", MaxGPUs: 4}}
	s, err := o.KubeSpec(id, KubeDeploy{Name: "thesis", GPUs: "2"}, "reg/x@sha256:"+strings.Repeat("0", 64), "ds01-h-baker")
	if err != nil {
		t.Fatal(err)
	}
	if s.UID != id.UID || s.GID != id.GID || len(s.Groups) != 1 || s.Groups[0] != 1722801000 || s.GPUs != 2 {
		t.Errorf("spec %+v", s)
	}
	if s.Workspace.Claim != "ws-h-baker" || s.Workspace.SubPath != "thesis" {
		t.Errorf("workspace %+v, want the user's claim and the project's sub-directory", s.Workspace)
	}
	for gpus, want := range map[string]string{"all": "give a count", "device=0,2": "give a count", "5": "at most 4", "-1": "give a count"} {
		if _, err := o.KubeSpec(id, KubeDeploy{Name: "thesis", GPUs: gpus}, "reg/x", "ns"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--gpus %s: %v, want %q", gpus, err, want)
		}
	}
}
