package testbed

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
)

// The bed's control plane is a real one: a granted user's pod asking for
// GPUs is bound by the real scheduler to the one node with enough and
// runs there, one asking for more than any node has stays Pending with
// the scheduler's reason, and RBAC refuses whom nobody granted anything.
func TestKube(t *testing.T) {
	k := StartKube(t, KubeNode{Name: "gpu-a", GPUs: 2}, KubeNode{Name: "gpu-b", GPUs: 4})
	ns, other := Prefix(t), Prefix(t)
	alice, bob := Prefix(t)+"-alice", Prefix(t)+"-bob"
	k.Grant(t, alice, ns)
	k.Grant(t, "someone-else", other)
	_, cs, gotNS := userClient(t, k.UserConfig(t, alice, []string{"ds01-users"}, ns, -1, -1))
	if gotNS != ns {
		t.Fatalf("the user's kubeconfig is in namespace %q, want %q", gotNS, ns)
	}

	t.Run("bound to the node with enough GPUs and running", func(t *testing.T) {
		createGPUPod(t, cs, ns, "three", 3)
		p := waitPod(t, cs, ns, "three", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		if p.Spec.NodeName != "gpu-b" {
			t.Fatalf("pod asking for 3 GPUs bound to %q, want gpu-b (the only node with 4)", p.Spec.NodeName)
		}
	})

	t.Run("more GPUs than any node has stays Pending, unschedulable", func(t *testing.T) {
		createGPUPod(t, cs, ns, "eight", 8)
		p := waitPod(t, cs, ns, "eight", func(p *corev1.Pod) bool { return scheduledCondition(p) != nil })
		c := scheduledCondition(p)
		if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" || c.Reason != corev1.PodReasonUnschedulable {
			t.Fatalf("pod asking for 8 GPUs: phase %s, node %q, PodScheduled %s %s: %s", p.Status.Phase, p.Spec.NodeName, c.Status, c.Reason, c.Message)
		}
		if !strings.Contains(c.Message, "Insufficient nvidia.com/gpu") {
			t.Fatalf("unschedulable message %q does not name the GPUs", c.Message)
		}
	})

	t.Run("no grant, no pods", func(t *testing.T) {
		_, bobCS, _ := userClient(t, k.UserConfig(t, bob, nil, ns, -1, -1))
		for _, c := range []struct {
			who string
			cs  kubernetes.Interface
			ns  string
		}{{bob, bobCS, ns}, {alice, cs, other}} {
			_, err := c.cs.CoreV1().Pods(c.ns).Create(context.Background(), gpuPod("refused", 1), metav1.CreateOptions{})
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s creating a pod in %s: %v, want Forbidden", c.who, c.ns, err)
			}
		}
	})
}

// A user's kubeconfig is that user's alone: a real test user reads the
// one made for it, another cannot.
func TestKubeUserConfigOwner(t *testing.T) {
	homes := HomesDir(t, PlainHomes)
	owner, stranger := NewUser(t, homes), NewUser(t, homes)
	k := StartKube(t)
	path := k.UserConfig(t, owner.Login, nil, "default", int(owner.UID), int(owner.GID))
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, stderr, err := owner.Run(t, nil, "cat", path); err != nil || got != string(want) {
		t.Fatalf("the owner reading its kubeconfig: %v %s", err, stderr)
	}
	if _, _, err := stranger.Run(t, nil, "cat", path); err == nil {
		t.Fatal("another user read the kubeconfig")
	}
}

// Exec into a pod works as a user's client does it (client-go's
// remotecommand over WebSocket or SPDY, through the API server and its
// RBAC) where AllowExec allowed it: the command runs on this machine as
// the given user, in the given directory, stdin and stdout streamed; and
// nowhere else.
func TestKubeExec(t *testing.T) {
	homes := HomesDir(t, PlainHomes)
	runner := NewUser(t, homes)
	k := StartKube(t, KubeNode{Name: "gpu-a", GPUs: 2})
	ns, closed := Prefix(t), Prefix(t)
	alice := Prefix(t) + "-alice"
	k.Grant(t, alice, ns)
	k.Grant(t, alice, closed)
	dir := k.AllowExec(t, ns, int(runner.UID), int(runner.GID))
	cfg, cs, _ := userClient(t, k.UserConfig(t, alice, nil, ns, -1, -1))
	for _, n := range []string{ns, closed} {
		createGPUPod(t, cs, n, "shell", 1)
		waitPod(t, cs, n, "shell", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	}
	// read, not cat: kwok v0.8.0 never closes the command's stdin, so
	// nothing reading to end of input ends.
	want := fmt.Sprintf("%d\n%s\nhello\n", runner.UID, dir)
	for _, proto := range []string{"websocket", "spdy"} {
		stdout, stderr, err := execIn(t, cfg, cs, proto, ns, "shell", "hello\n", "sh", "-c", `id -u; pwd; read -r l; echo "$l"`)
		if err != nil {
			t.Fatalf("exec (%s) in %s: %v (stderr %q)", proto, ns, err, stderr)
		}
		if stdout != want {
			t.Fatalf("exec (%s) in %s printed %q, want %q", proto, ns, stdout, want)
		}
	}
	// kwok's own refusal, passed on by the API server: the pod is there
	// and Running, the user may exec, kwok has no rule for closed.
	_, _, err := execIn(t, cfg, cs, "websocket", closed, "shell", "", "true")
	if err == nil || !strings.Contains(err.Error(), "no exec found") {
		t.Fatalf("exec in %s, never allowed: %v, want kwok's refusal", closed, err)
	}
}

// execIn runs command in the pod's container as client-go's users do,
// over WebSocket (kubectl's first choice, which the API server turns into
// SPDY toward the kubelet) or SPDY.
func execIn(t *testing.T, cfg *rest.Config, cs kubernetes.Interface, proto, ns, pod, stdin string, command ...string) (string, string, error) {
	t.Helper()
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "work", Command: command, Stdin: stdin != "", Stdout: true, Stderr: true}, scheme.ParameterCodec)
	var ex remotecommand.Executor
	var err error
	if proto == "websocket" {
		ex, err = remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
	} else {
		ex, err = remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
	}
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	opts := remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut}
	if stdin != "" {
		opts.Stdin = strings.NewReader(stdin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = ex.StreamWithContext(ctx, opts)
	return out.String(), errOut.String(), err
}

// userClient is the client configuration and clientset a user's
// kubeconfig at path makes, and the namespace it names.
func userClient(t *testing.T, path string) (*rest.Config, kubernetes.Interface, string) {
	t.Helper()
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, nil)
	cfg, err := cc.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cs, ns
}

func gpuPod(name string, gpus int64) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "work", Image: "debian:bookworm",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{KubeGPU: *resource.NewQuantity(gpus, resource.DecimalSI)}},
		}}},
	}
}

func createGPUPod(t *testing.T, cs kubernetes.Interface, ns, name string, gpus int64) {
	t.Helper()
	if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), gpuPod(name, gpus), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
}

// waitPod polls the pod until done says so, for 30 s.
func waitPod(t *testing.T, cs kubernetes.Interface, ns, name string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if done(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: phase %s, node %q, conditions %v", name, p.Status.Phase, p.Spec.NodeName, p.Status.Conditions)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scheduledCondition is the pod's PodScheduled condition when it is False.
func scheduledCondition(p *corev1.Pod) *corev1.PodCondition {
	for i, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}
