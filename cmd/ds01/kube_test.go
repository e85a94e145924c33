package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/internal/testbed"
)

// The journey of issue 16 on a real control plane: a user outside the
// docker group makes an image through the service, pushes it to the test
// bed's registry, and runs it on Kubernetes as themselves with their own
// kubeconfig; the real scheduler places it by its GPUs.
func TestKubernetesDeploy(t *testing.T) {
	j := startKubeJourney(t)
	for _, step := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"dry run", j.dryRun},
		{"more GPUs than any node: Pending with the scheduler's reason", j.pending},
		{"bound by the scheduler, as the user", j.bound},
		{"a namespace RBAC does not give the user", j.forbidden},
		{"retire", j.retire},
		{"job", j.job},
		{"passes Pod Security's restricted level", j.restricted},
		{"the lab's admission policy pins pods to the user", j.pinned},
		{"a quota the namespace sets", j.quota},
		{"refusals", j.refusals},
	} {
		t.Run(step.name, step.run)
	}
}

// kubeJourney is one user's image, pushed, and a control plane that
// lets the user use namespace ns.
type kubeJourney struct {
	k                             *testbed.Kube
	admin                         kubernetes.Interface
	s                             *service
	u                             testbed.User
	gid                           uint32 // of the user's extra group
	uid, project, ns, pod, pushed string
	repo                          string
	env                           []string
}

func startKubeJourney(t *testing.T) *kubeJourney {
	reg := testbed.StartRegistry(t)
	k := testbed.StartKube(t, testbed.KubeNode{Name: "gpu-a", GPUs: 2}, testbed.KubeNode{Name: "gpu-b", GPUs: 4})
	d, base, s := serviceOn(t, "kube", "[kubernetes]\nnamespace = \"ds01-{name}\"\nworkspace_path = \"/srv/ds01/{name}/{project}\"\nmax_gpus = 16")
	group, gid := testbed.NewGroup(t)
	u := testbed.NewUser(t, testbed.HomesDir(t, testbed.HardenedHomes), group)
	j := &kubeJourney{k: k, admin: k.Admin(t), s: s, u: u, gid: gid, uid: strconv.FormatUint(uint64(u.UID), 10), project: testbed.Prefix(t), ns: "ds01-" + u.Login}
	j.pod, j.repo = j.project+"-"+j.uid, reg.Host+"/ds01-"+j.uid+"/"+j.project
	j.env = []string{"DS01_POLICY=" + filepath.Join(s.dir, "policy.toml")}
	testbed.RemoveImage(t, d, "ds01-"+j.uid+"/"+j.project+":latest")
	if out, code := s.through(t, u, "image", "create", j.project, "--base", base); code != 0 {
		t.Fatalf("image create: exit %d\n%s", code, out)
	}
	if out, code := s.through(t, u, "image", "push", j.project, "--to", j.repo); code != 0 {
		t.Fatalf("image push: exit %d\n%s", code, out)
	}
	j.pushed = pushedDigest(t, u, j.project)
	k.Grant(t, u.Login, j.ns)
	writeKubeconfig(t, u, k.UserConfig(t, u.Login, nil, "", int(u.UID), int(u.GID)))
	return j
}

// run is ds01 as the user, with the journey's policy: output and exit code.
func (j *kubeJourney) run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, errOut, err := j.u.Run(t, j.env, testbed.Binary(t), args...)
	return out + errOut, exitOf(t, err)
}

func (j *kubeJourney) podGone(t *testing.T) bool {
	t.Helper()
	_, err := j.admin.CoreV1().Pods(j.ns).Get(context.Background(), j.pod, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func (j *kubeJourney) dryRun(t *testing.T) {
	out, code := j.run(t, "container", "deploy", j.project, "--on", "k8s", "--gpus", "2", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"kind: Pod", "namespace: " + j.ns, "runAsUser: " + j.uid, "runAsNonRoot: true", "nvidia.com/gpu: \"2\"", "path: /srv/ds01/" + j.u.Login + "/" + j.project, "@" + j.pushed} {
		if !strings.Contains(out, want) {
			t.Errorf("manifest lacks %q:\n%s", want, out)
		}
	}
	if !j.podGone(t) {
		t.Error("a dry run made the pod")
	}
}

func (j *kubeJourney) pending(t *testing.T) {
	out, code := j.run(t, "container", "deploy", j.project, "--on", "k8s", "--gpus", "8")
	t.Log(out)
	if code == 0 || !strings.Contains(out, "Pending") || !strings.Contains(out, "Insufficient nvidia.com/gpu") {
		t.Fatalf("exit %d, want a failure saying Pending and why:\n%s", code, out)
	}
	if out, code := j.run(t, "container", "retire", j.project, "--on", "k8s"); code != 0 {
		t.Fatalf("retire the pending pod: exit %d\n%s", code, out)
	}
}

func (j *kubeJourney) bound(t *testing.T) {
	out, code := j.run(t, "container", "deploy", j.project, "--on", "k8s", "--gpus", "3")
	if code != 0 || !strings.Contains(out, "on node gpu-b") {
		t.Fatalf("exit %d, want the pod on gpu-b (the only node with 3 free GPUs):\n%s", code, out)
	}
	pod, err := j.admin.CoreV1().Pods(j.ns).Get(context.Background(), j.pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertPodIsTheUser(t, pod, j.u.UID, j.u.GID, j.gid)
	if pod.Spec.NodeName != "gpu-b" || pod.Status.Phase != corev1.PodRunning {
		t.Errorf("pod on %q, %s; want gpu-b, Running", pod.Spec.NodeName, pod.Status.Phase)
	}
	if img := pod.Spec.Containers[0].Image; img != j.repo+"@"+j.pushed {
		t.Errorf("image %s, want the pushed digest %s", img, j.pushed)
	}
	j.open(t)
	out, code = j.run(t, "container", "list", "--on", "k8s")
	if code != 0 || !strings.Contains(out, j.project+"  Pod   "+j.ns+"  Running  gpu-b  3 ") {
		t.Errorf("list: exit %d\n%s", code, out)
	}
	out, code = j.run(t, "container", "list", "--on", "k8s", "--json")
	var ws []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ws) != nil || len(ws) != 1 || ws[0]["name"] != j.project || ws[0]["node"] != "gpu-b" || ws[0]["gpus"] != "3" {
		t.Errorf("list --json: exit %d\n%s", code, out)
	}
}

// open runs commands in the pod. kwok's exec runs them on the host as
// the user (there is no container): what is tested is ds01's way there,
// the API server's exec as the user.
func (j *kubeJourney) open(t *testing.T) {
	j.k.AllowExec(t, j.ns, int(j.u.UID), int(j.u.GID))
	if out, code := j.run(t, "container", "open", "--on", "k8s", j.project, "id", "-u"); code != 0 || strings.TrimSpace(out) != j.uid {
		t.Errorf("open --on k8s %s id -u: exit %d, %q; want %s", j.project, code, out, j.uid)
	}
	// kwok's exec reports a failed command without its exit status (a
	// kubelet sends it), so only the failure is asserted here.
	out, code := j.run(t, "container", "open", "--on", "k8s", j.project, "sh", "-c", "exit 3")
	t.Log(out)
	if code == 0 {
		t.Errorf("open --on k8s of a failing command: exit 0\n%s", out)
	}
}

func (j *kubeJourney) forbidden(t *testing.T) {
	out, code := j.run(t, "container", "deploy", j.project, "--on", "k8s", "--namespace", "kube-system")
	t.Log(out)
	if code == 0 || !strings.Contains(out, "Kubernetes refused") || !strings.Contains(out, "namespace kube-system") || !strings.Contains(out, "RBAC") {
		t.Fatalf("exit %d, want the RBAC refusal named:\n%s", code, out)
	}
}

func (j *kubeJourney) retire(t *testing.T) {
	if out, code := j.run(t, "container", "retire", j.project, "--on", "k8s"); code != 0 || !strings.Contains(out, "retired Pod "+j.pod) {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if !j.podGone(t) {
		t.Error("pod still there after retire")
	}
	if out, code := j.run(t, "container", "retire", j.project, "--on", "k8s"); code == 0 || !strings.Contains(out, "you have no ds01 workload "+j.project) {
		t.Errorf("second retire: exit %d\n%s", code, out)
	}
}

// job: the test bed has no controller manager, so the Job's pod is never
// made, and ds01 says so instead of waiting for ever.
func (j *kubeJourney) job(t *testing.T) {
	out, code := j.run(t, "container", "deploy", j.project, "--on", "k8s", "--job", "--wait", "2s", "--", "python3", "-c", "print(1)")
	if code != 0 || !strings.Contains(out, "the cluster has not started its pod yet") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	job, err := j.admin.BatchV1().Jobs(j.ns).Get(context.Background(), j.pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := job.Spec.Template.Spec.Containers[0].Command; strings.Join(c, " ") != "python3 -c print(1)" {
		t.Errorf("job command %q", c)
	}
	if out, code := j.run(t, "container", "retire", j.project, "--on", "k8s"); code != 0 || !strings.Contains(out, "retired Job") {
		t.Fatalf("retire job: exit %d\n%s", code, out)
	}
}

// restricted: with a workspace claim or none (a hostPath is refused at
// that level), the manifest passes the API server's Pod Security
// admission in a namespace that enforces "restricted".
func (j *kubeJourney) restricted(t *testing.T) {
	strict := filepath.Join(j.s.dir, "strict.toml")
	if err := os.WriteFile(strict, []byte("[kubernetes]\nnamespace = \"ds01-{name}\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := j.ns + "-restricted"
	j.k.Grant(t, j.u.Login, ns)
	nsObj, err := j.admin.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := j.admin.CoreV1().Namespaces().Update(context.Background(), nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := j.u.Run(t, []string{"DS01_POLICY=" + strict}, testbed.Binary(t), "container", "deploy", j.project, "--on", "k8s", "--namespace", ns, "--gpus", "1")
	if exitOf(t, err) != 0 || !strings.Contains(out, "in namespace "+ns+" on node") {
		t.Fatalf("deploy into a restricted namespace: %s%s", out, errOut)
	}
	if !strings.Contains(errOut, "emptyDir") {
		t.Errorf("no warning that the workspace goes with the pod: %s", errOut)
	}
	if out, code := j.run(t, "container", "retire", j.project, "--on", "k8s", "--namespace", ns); code != 0 {
		t.Fatalf("retire: exit %d\n%s", code, out)
	}
}

// pinned: with packaging/k8s/ds01-pin-user.yaml applied and the
// namespace labelled with the user's IDs, ds01's pod is let in, and a pod
// the user writes to run as someone else, or to name GPUs by environment,
// is refused by the real API server.
func (j *kubeJourney) pinned(t *testing.T) {
	ctx := context.Background()
	applyPinPolicy(t, j.admin)
	nsObj, err := j.admin.CoreV1().Namespaces().Get(ctx, j.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["ds01.user_id"], nsObj.Labels["ds01.group_id"] = j.uid, strconv.FormatUint(uint64(j.u.GID), 10)
	if _, err := j.admin.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mine := j.userClient(t)
	forged := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "forged", Namespace: j.ns},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr(int64(j.u.UID + 1)), RunAsGroup: ptr(int64(j.u.GID))},
			Containers:      []corev1.Container{{Name: "c", Image: j.repo + "@" + j.pushed}},
		},
	}
	// The policy reaches the API server's admission a moment after it is
	// made.
	var ferr error
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if _, ferr = mine.CoreV1().Pods(j.ns).Create(ctx, forged, metav1.CreateOptions{}); ferr != nil {
			break
		}
		mine.CoreV1().Pods(j.ns).Delete(ctx, "forged", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	}
	if ferr == nil || !strings.Contains(ferr.Error(), "run as its user") {
		t.Fatalf("a pod running as UID %d in %s's namespace: %v; want the policy's refusal", j.u.UID+1, j.uid, ferr)
	}
	gpus := forged.DeepCopy()
	gpus.Spec.SecurityContext.RunAsUser = ptr(int64(j.u.UID))
	gpus.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "NVIDIA_VISIBLE_DEVICES", Value: "all"}}
	if _, err := mine.CoreV1().Pods(j.ns).Create(ctx, gpus, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "not named by NVIDIA_VISIBLE_DEVICES") {
		t.Fatalf("a pod naming every GPU by environment: %v; want the policy's refusal", err)
	}
	if out, code := j.run(t, "container", "deploy", j.project, "--on", "k8s", "--wait", "10s"); code != 0 {
		t.Fatalf("ds01's own pod under the policy: exit %d\n%s", code, out)
	}
	if out, code := j.run(t, "container", "retire", j.project, "--on", "k8s"); code != 0 {
		t.Fatalf("retire: exit %d\n%s", code, out)
	}
}

// quota: a namespace's GPU quota refusing a pod is named as the quota,
// not as RBAC.
func (j *kubeJourney) quota(t *testing.T) {
	q := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "gpus"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"requests.nvidia.com/gpu": resource.MustParse("2")}},
	}
	made, err := j.admin.CoreV1().ResourceQuotas(j.ns).Create(context.Background(), q, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Admission enforces the quota's status, which the controller
	// manager (not in the test bed) would fill in.
	made.Status = corev1.ResourceQuotaStatus{Hard: q.Spec.Hard, Used: corev1.ResourceList{"requests.nvidia.com/gpu": resource.MustParse("0")}}
	if _, err := j.admin.CoreV1().ResourceQuotas(j.ns).UpdateStatus(context.Background(), made, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer j.admin.CoreV1().ResourceQuotas(j.ns).Delete(context.Background(), "gpus", metav1.DeleteOptions{})
	var out string
	var code int
	// Quota admission, too, starts once it has seen the quota.
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if out, code = j.run(t, "container", "deploy", j.project, "--on", "k8s", "--gpus", "3"); code != 0 {
			break
		}
		j.run(t, "container", "retire", j.project, "--on", "k8s")
	}
	if code == 0 || !strings.Contains(out, "the quota of namespace "+j.ns+" refuses it") || strings.Contains(out, "RBAC") {
		t.Fatalf("exit %d, want the quota named:\n%s", code, out)
	}
}

// userClient is a clientset with the user's own credentials.
func (j *kubeJourney) userClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(j.u.Home, ".kube", "config"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// applyPinPolicy makes the shipped admission policy and its binding.
func applyPinPolicy(t *testing.T, admin kubernetes.Interface) {
	t.Helper()
	data, err := os.ReadFile("../../packaging/k8s/ds01-pin-user.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(data), "\n---\n")
	var pol admissionv1.ValidatingAdmissionPolicy
	var bind admissionv1.ValidatingAdmissionPolicyBinding
	if len(docs) != 2 || yaml.UnmarshalStrict([]byte(docs[0]), &pol) != nil || yaml.UnmarshalStrict([]byte(docs[1]), &bind) != nil {
		t.Fatalf("packaging/k8s/ds01-pin-user.yaml: want a policy and its binding")
	}
	ctx := context.Background()
	if _, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (j *kubeJourney) refusals(t *testing.T) {
	os.RemoveAll(filepath.Join(j.u.Home, ".kube"))
	out, code := j.run(t, "container", "list", "--on", "k8s")
	if code == 0 || !strings.Contains(out, "no kubeconfig") {
		t.Errorf("without a kubeconfig: exit %d\n%s", code, out)
	}
	j.u.AllowSudo(t, testbed.Binary(t))
	out, errOut, err := j.u.Run(t, j.env, "sudo", "-n", testbed.Binary(t), "container", "list", "--on", "k8s")
	if exitOf(t, err) == 0 || !strings.Contains(out+errOut, "without sudo") {
		t.Errorf("through sudo: %s%s", out, errOut)
	}
	out, code = j.run(t, "container", "deploy", j.project, "--on", "k8s", "--gpus", "all", "--dry-run")
	if code == 0 || !strings.Contains(out, "on Kubernetes give a count") {
		t.Errorf("--gpus all: exit %d\n%s", code, out)
	}
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
