package kube

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "rewrite the golden manifests under testdata/")

func base() Spec {
	return Spec{
		Name: "thesis_run.2", Namespace: "ds01-h-baker", Image: "registry.lab:5000/ds01-1722830498/thesis@sha256:" + strings.Repeat("ab", 32),
		UID: 1722830498, GID: 1722800513, Groups: []uint32{1722800513, 44, 1722801000}, User: "h-baker", Login: "h.baker@hertie-school.lan",
		GPUResource: "nvidia.com/gpu", Version: "test",
	}
}

func TestManifestGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		edit   func(*Spec)
	}{
		{"pod-no-gpu", func(*Spec) {}},
		{"pod-2-gpus-claim", func(s *Spec) {
			s.GPUs = 2
			s.Workspace = Workspace{Claim: "ds01-workspace-h-baker", SubPath: "thesis_run.2"}
			s.ShmSize = 8 << 30
		}},
		{"job-hostpath-sudo", func(s *Spec) {
			s.Job, s.Command = true, []string{"python", "train.py", "--epochs", "3"}
			s.GPUs = 1
			s.Workspace = Workspace{Path: "/srv/ds01/h-baker/thesis_run.2"}
			s.AllowPrivilegeEscalation = true
			s.PullSecret = "lab-registry"
		}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			s := base()
			tc.edit(&s)
			obj, err := Manifest(s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := YAML(obj)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("manifest differs from %s (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

// The rules the golden files show, asserted on their own so that a
// rewritten golden file cannot hide losing one.
func TestManifestRunsAsTheUser(t *testing.T) {
	s := base()
	s.GPUs = 3
	obj, err := Manifest(s)
	if err != nil {
		t.Fatal(err)
	}
	pod := obj.(*corev1.Pod)
	sc := pod.Spec.SecurityContext
	if *sc.RunAsUser != 1722830498 || *sc.RunAsGroup != 1722800513 || !*sc.RunAsNonRoot {
		t.Errorf("pod security context %+v: want the user's UID and GID, non-root", sc)
	}
	if len(sc.SupplementalGroups) != 2 || sc.SupplementalGroups[0] != 44 || sc.SupplementalGroups[1] != 1722801000 {
		t.Errorf("supplemental groups %v: want the user's other groups (44, 1722801000), not the primary", sc.SupplementalGroups)
	}
	if sc.FSGroup != nil {
		t.Errorf("fsGroup %d set: it chowns whole volumes", *sc.FSGroup)
	}
	c := pod.Spec.Containers[0]
	if *c.SecurityContext.AllowPrivilegeEscalation {
		t.Error("privilege escalation allowed without the administrator's setting")
	}
	if q := c.Resources.Limits["nvidia.com/gpu"]; q.Value() != 3 {
		t.Errorf("GPU limit %v, want 3", q.String())
	}
	for _, e := range c.Env {
		if e.Name == "NVIDIA_VISIBLE_DEVICES" {
			t.Errorf("NVIDIA_VISIBLE_DEVICES=%s set on a pod granted GPUs: the device plugin sets it", e.Value)
		}
	}
	if pod.Name != "thesis-run-2-1722830498" || pod.Labels["ds01.name"] != "thesis_run.2" || pod.Labels["ds01.user_id"] != "1722830498" {
		t.Errorf("name %s labels %v", pod.Name, pod.Labels)
	}
	if *pod.Spec.AutomountServiceAccountToken {
		t.Error("the namespace's service account token is mounted into a user's pod")
	}
}

func TestManifestRefuses(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Spec)
		want string
	}{
		{func(s *Spec) { s.UID = 0 }, "never as root"},
		{func(s *Spec) { s.GID = 0 }, "never as root"},
		{func(s *Spec) { s.Name = "Bad Name" }, "lowercase"},
		{func(s *Spec) { s.Name = strings.Repeat("a", 60) }, "too long for Kubernetes"},
		{func(s *Spec) { s.Namespace = "Not_A_Namespace" }, "namespace"},
		{func(s *Spec) { s.Job = true }, "give it after --"},
		{func(s *Spec) { s.GPUs = -1 }, "give a count"},
		{func(s *Spec) { s.Workspace = Workspace{Claim: "c", Path: "/p"} }, "not both"},
	} {
		s := base()
		tc.edit(&s)
		_, err := Manifest(s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one saying %q", err, tc.want)
		}
	}
}
