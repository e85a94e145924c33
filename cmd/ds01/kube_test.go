package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/internal/testbed"
)

// The journey of issue 16 on a real control plane: a user outside the
// docker group makes an image through the service, pushes it to the test
// bed's registry, and runs it on Kubernetes as themselves with their own
// kubeconfig; the real scheduler places it by its GPUs.
func TestKubernetesDeploy(t *testing.T) {
	reg := testbed.StartRegistry(t)
	k := testbed.StartKube(t, testbed.KubeNode{Name: "gpu-a", GPUs: 2}, testbed.KubeNode{Name: "gpu-b", GPUs: 4})
	d, base, s := serviceOn(t, "kube", "[kubernetes]\nnamespace = \"ds01-{name}\"\nworkspace_path = \"/srv/ds01/{name}/{project}\"\nmax_gpus = 16")
	group, gid := testbed.NewGroup(t)
	u := testbed.NewUser(t, testbed.HomesDir(t, testbed.HardenedHomes), group)
	uid := strconv.FormatUint(uint64(u.UID), 10)
	project := testbed.Prefix(t)
	testbed.RemoveImage(t, d, "ds01-"+uid+"/"+project+":latest")
	if out, code := s.through(t, u, "image", "create", project, "--base", base); code != 0 {
		t.Fatalf("image create: exit %d\n%s", code, out)
	}
	if out, code := s.through(t, u, "image", "push", project, "--to", reg.Host+"/ds01-"+uid+"/"+project); code != 0 {
		t.Fatalf("image push: exit %d\n%s", code, out)
	}
	pushed := pushedDigest(t, u, project)
	ns := "ds01-" + u.Login
	k.Grant(t, u.Login, ns)
	writeKubeconfig(t, u, k.UserConfig(t, u.Login, nil, "", int(u.UID), int(u.GID)))
	env := []string{"DS01_POLICY=" + filepath.Join(s.dir, "policy.toml")}
	run := func(args ...string) (string, int) {
		t.Helper()
		out, errOut, err := u.Run(t, env, testbed.Binary(t), args...)
		return out + errOut, exitOf(t, err)
	}
	admin := k.Admin(t)
	podName := project + "-" + uid

	t.Run("dry run", func(t *testing.T) {
		out, code := run("container", "deploy", project, "--on", "k8s", "--gpus", "2", "--dry-run")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		for _, want := range []string{"kind: Pod", "namespace: " + ns, "runAsUser: " + uid, "runAsNonRoot: true", "nvidia.com/gpu: \"2\"", "path: /srv/ds01/" + u.Login + "/" + project, "@" + pushed} {
			if !strings.Contains(out, want) {
				t.Errorf("manifest lacks %q:\n%s", want, out)
			}
		}
		if _, err := admin.CoreV1().Pods(ns).Get(context.Background(), podName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a dry run made the pod: %v", err)
		}
	})

	t.Run("more GPUs than any node: Pending with the scheduler's reason", func(t *testing.T) {
		out, code := run("container", "deploy", project, "--on", "k8s", "--gpus", "8")
		t.Log(out)
		if code == 0 || !strings.Contains(out, "Pending") || !strings.Contains(out, "Insufficient nvidia.com/gpu") {
			t.Fatalf("exit %d, want a failure saying Pending and why:\n%s", code, out)
		}
		if out, code := run("container", "retire", project, "--on", "k8s"); code != 0 {
			t.Fatalf("retire the pending pod: exit %d\n%s", code, out)
		}
	})

	t.Run("bound by the scheduler, as the user", func(t *testing.T) {
		out, code := run("container", "deploy", project, "--on", "k8s", "--gpus", "3")
		if code != 0 || !strings.Contains(out, "on node gpu-b") {
			t.Fatalf("exit %d, want the pod on gpu-b (the only node with 3 free GPUs):\n%s", code, out)
		}
		pod, err := admin.CoreV1().Pods(ns).Get(context.Background(), podName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		assertPodIsTheUser(t, pod, u.UID, u.GID, gid)
		if pod.Spec.NodeName != "gpu-b" || pod.Status.Phase != corev1.PodRunning {
			t.Errorf("pod on %q, %s; want gpu-b, Running", pod.Spec.NodeName, pod.Status.Phase)
		}
		if img := pod.Spec.Containers[0].Image; img != reg.Host+"/ds01-"+uid+"/"+project+"@"+pushed {
			t.Errorf("image %s, want the pushed digest %s", img, pushed)
		}
		// kwok's exec runs the command on the host as the user (there is
		// no container): what is tested is ds01's way there, the API
		// server's exec as the user, and the exit status back.
		k.AllowExec(t, ns, int(u.UID), int(u.GID))
		if out, code := run("container", "open", "--on", "k8s", project, "id", "-u"); code != 0 || strings.TrimSpace(out) != uid {
			t.Errorf("open --on k8s %s id -u: exit %d, %q; want %s", project, code, out, uid)
		}
		// kwok's exec reports a failed command without its exit status
		// (a kubelet sends it), so only the failure is asserted here.
		out, code = run("container", "open", "--on", "k8s", project, "sh", "-c", "exit 3")
		t.Log(out)
		if code == 0 {
			t.Errorf("open --on k8s of a failing command: exit 0\n%s", out)
		}
		out, code = run("container", "list", "--on", "k8s")
		if code != 0 || !strings.Contains(out, project+"  Pod   "+ns+"  Running  gpu-b  3 ") {
			t.Errorf("list: exit %d\n%s", code, out)
		}
		out, code = run("container", "list", "--on", "k8s", "--json")
		var ws []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &ws) != nil || len(ws) != 1 || ws[0]["name"] != project || ws[0]["node"] != "gpu-b" || ws[0]["gpus"] != "3" {
			t.Errorf("list: exit %d\n%s", code, out)
		}
	})

	t.Run("a namespace RBAC does not give the user", func(t *testing.T) {
		out, code := run("container", "deploy", project, "--on", "k8s", "--namespace", "kube-system")
		t.Log(out)
		if code == 0 || !strings.Contains(out, "Kubernetes refused") || !strings.Contains(out, "namespace kube-system") || !strings.Contains(out, "RBAC") {
			t.Fatalf("exit %d, want the RBAC refusal named:\n%s", code, out)
		}
	})

	t.Run("retire", func(t *testing.T) {
		if out, code := run("container", "retire", project, "--on", "k8s"); code != 0 || !strings.Contains(out, "retired Pod "+podName) {
			t.Fatalf("exit %d\n%s", code, out)
		}
		if _, err := admin.CoreV1().Pods(ns).Get(context.Background(), podName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("pod still there after retire: %v", err)
		}
		if out, code := run("container", "retire", project, "--on", "k8s"); code == 0 || !strings.Contains(out, "you have no ds01 workload "+project) {
			t.Errorf("second retire: exit %d\n%s", code, out)
		}
	})

	t.Run("job", func(t *testing.T) {
		// The test bed has no controller manager, so the Job's pod is
		// never made: ds01 says so instead of waiting for ever.
		out, code := run("container", "deploy", project, "--on", "k8s", "--job", "--wait", "2s", "--", "python3", "-c", "print(1)")
		if code != 0 || !strings.Contains(out, "the cluster has not started its pod yet") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		job, err := admin.BatchV1().Jobs(ns).Get(context.Background(), podName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := job.Spec.Template.Spec.Containers[0].Command; strings.Join(c, " ") != "python3 -c print(1)" {
			t.Errorf("job command %q", c)
		}
		if out, code := run("container", "retire", project, "--on", "k8s"); code != 0 || !strings.Contains(out, "retired Job") {
			t.Fatalf("retire job: exit %d\n%s", code, out)
		}
	})

	t.Run("passes Pod Security's restricted level", func(t *testing.T) {
		// A workspace claim or none: a hostPath is refused at that level.
		strict := filepath.Join(s.dir, "strict.toml")
		if err := os.WriteFile(strict, []byte("[kubernetes]\nnamespace = \"ds01-{name}\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		restricted := ns + "-restricted"
		k.Grant(t, u.Login, restricted)
		nsObj, err := admin.CoreV1().Namespaces().Get(context.Background(), restricted, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nsObj.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
		if _, err := admin.CoreV1().Namespaces().Update(context.Background(), nsObj, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := u.Run(t, []string{"DS01_POLICY=" + strict}, testbed.Binary(t), "container", "deploy", project, "--on", "k8s", "--namespace", restricted, "--gpus", "1")
		if exitOf(t, err) != 0 || !strings.Contains(out, "in namespace "+restricted+" on node") {
			t.Fatalf("deploy into a restricted namespace: %s%s", out, errOut)
		}
		if !strings.Contains(errOut, "emptyDir") {
			t.Errorf("no warning that the workspace goes with the pod: %s", errOut)
		}
		if out, code := run("container", "retire", project, "--on", "k8s", "--namespace", restricted); code != 0 {
			t.Fatalf("retire: exit %d\n%s", code, out)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		os.RemoveAll(filepath.Join(u.Home, ".kube"))
		out, code := run("container", "list", "--on", "k8s")
		if code == 0 || !strings.Contains(out, "no kubeconfig") {
			t.Errorf("without a kubeconfig: exit %d\n%s", code, out)
		}
		u.AllowSudo(t, testbed.Binary(t))
		out, errOut, err := u.Run(t, env, "sudo", "-n", testbed.Binary(t), "container", "list", "--on", "k8s")
		if exitOf(t, err) == 0 || !strings.Contains(out+errOut, "without sudo") {
			t.Errorf("through sudo: %s%s", out, errOut)
		}
		out, code = run("container", "deploy", project, "--on", "k8s", "--gpus", "all", "--dry-run")
		if code == 0 || !strings.Contains(out, "on Kubernetes give a count") {
			t.Errorf("--gpus all: exit %d\n%s", code, out)
		}
	})
}

func assertPodIsTheUser(t *testing.T, pod *corev1.Pod, uid, gid, extra uint32) {
	t.Helper()
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != int64(uid) || *sc.RunAsGroup != int64(gid) || !*sc.RunAsNonRoot || sc.FSGroup != nil {
		t.Fatalf("pod security context %+v: want runAsUser %d, runAsGroup %d, runAsNonRoot, no fsGroup", sc, uid, gid)
	}
	found := false
	for _, g := range sc.SupplementalGroups {
		found = found || g == int64(extra)
	}
	if !found {
		t.Errorf("supplementalGroups %v lack the user's group %d", sc.SupplementalGroups, extra)
	}
	c := pod.Spec.Containers[0]
	if q := c.Resources.Limits["nvidia.com/gpu"]; q.Value() != 3 {
		t.Errorf("GPU limit %s, want 3", q.String())
	}
	if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Error("privilege escalation is not off")
	}
}

// pushedDigest is the digest image push recorded for the project.
func pushedDigest(t *testing.T, u testbed.User, project string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(u.Home, ".ds01-config", "images", project+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec record.Record
	if err := json.Unmarshal(data, &rec); err != nil || len(rec.Pushed) == 0 {
		t.Fatalf("record of %s: %v, pushed %v", project, err, rec.Pushed)
	}
	return rec.Pushed[len(rec.Pushed)-1].Digest
}

// writeKubeconfig puts the kubeconfig where kubectl looks by default, as
// the user.
func writeKubeconfig(t *testing.T, u testbed.User, from string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := u.Run(t, nil, "mkdir", "-p", filepath.Join(u.Home, ".kube")); err != nil {
		t.Fatal(err, errOut)
	}
	c := u.Command("tee", filepath.Join(u.Home, ".kube", "config"))
	c.Stdin = strings.NewReader(string(data))
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
}
