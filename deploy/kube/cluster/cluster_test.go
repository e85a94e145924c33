package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ds01/ds01/deploy/kube"
)

// These run against client-go's fake clientset: the logic of reading a
// pod's status. What a real API server and scheduler do is the
// test bed's (cluster_kube_test.go).

func spec() kube.Spec {
	return kube.Spec{Name: "p", Namespace: "ns", Image: "reg/x@sha256:" + strings.Repeat("0", 64), UID: 1001, GID: 1001, User: "u", GPUResource: "nvidia.com/gpu"}
}

// withStatus makes the fake API server give every created pod status.
func withStatus(cs *fake.Clientset, status corev1.PodStatus, node string) {
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		pod.Status, pod.Spec.NodeName = status, node
		return false, nil, nil
	})
}

func TestCreateSettles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  corev1.PodStatus
		node    string
		want    string // in the error; "" for none
		removed bool
	}{
		{"running", corev1.PodStatus{Phase: corev1.PodRunning}, "gpu-a", "", false},
		{"unschedulable", corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
		}}}, "", "Pending in namespace ns: the scheduler says: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu.", false},
		{"pull failure", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Image: "reg/x", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}},
		}}}, "gpu-a", "could not pull reg/x on node gpu-a (ImagePullBackOff: Back-off pulling image); the workload was removed", true},
		{"failed", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 127}},
		}}}, "gpu-a", "exit code 127", false},
		{"never scheduled", corev1.PodStatus{Phase: corev1.PodPending}, "", "the scheduler has not placed it yet", false},
		{"placed, still starting", corev1.PodStatus{Phase: corev1.PodPending}, "gpu-b", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			withStatus(cs, tc.status, tc.node)
			c := &Cluster{API: fakeAPI{cs}, Namespace: "ns"}
			obj, err := kube.Manifest(spec())
			if err != nil {
				t.Fatal(err)
			}
			d, err := c.Create(context.Background(), obj, 600*time.Millisecond)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.want == "" && d.Node != tc.node {
				t.Errorf("node %q, want %q", d.Node, tc.node)
			}
			_, gerr := cs.CoreV1().Pods("ns").Get(context.Background(), obj.GetName(), metav1.GetOptions{})
			if gone := apierrors.IsNotFound(gerr); gone != tc.removed {
				t.Errorf("pod removed: %v, want %v", gone, tc.removed)
			}
		})
	}
}

func TestCreateExplainsRefusals(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New(`User "bob" cannot create resource "pods" in API group "" in the namespace "ns"`))
	})
	c := &Cluster{API: fakeAPI{cs}, Namespace: "ns"}
	obj, _ := kube.Manifest(spec())
	_, err := c.Create(context.Background(), obj, time.Second)
	var f *Forbidden
	if !errors.As(err, &f) || !strings.Contains(err.Error(), `Kubernetes refused creating Pod p-1001 in namespace ns: your account may not (RBAC: pods is forbidden: User "bob" cannot create`) || !strings.Contains(err.Error(), "RoleBinding") {
		t.Fatalf("error %v: want the RBAC refusal in the user's terms", err)
	}

	cs = fake.NewClientset()
	c = &Cluster{API: fakeAPI{cs}, Namespace: "ns"}
	withStatus(cs, corev1.PodStatus{Phase: corev1.PodRunning}, "n")
	if _, err := c.Create(context.Background(), obj, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(context.Background(), obj, time.Second); err == nil || !strings.Contains(err.Error(), "you already have p on the cluster") {
		t.Fatalf("second create: %v", err)
	}
}

func TestListFindRetireOwnOnly(t *testing.T) {
	cs := fake.NewClientset()
	c := &Cluster{API: fakeAPI{cs}, Namespace: "ns"}
	mine, other := spec(), spec()
	other.UID, other.Name = 1002, "p"
	job := spec()
	job.Name, job.Job, job.Command = "train", true, []string{"true"}
	for _, s := range []kube.Spec{mine, other, job} {
		obj, _ := kube.Manifest(s)
		if _, err := c.Create(context.Background(), obj, 300*time.Millisecond); err != nil && !strings.Contains(err.Error(), "Pending") {
			t.Fatal(err)
		}
	}
	ws, err := c.List(context.Background(), 1001)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Name != "p" || ws[0].Kind != "Pod" || ws[1].Name != "train" || ws[1].Kind != "Job" || ws[1].Phase != "no pod yet" {
		t.Fatalf("list %+v: want the user's pod p and job train, not UID 1002's", ws)
	}
	if _, err := c.Find(context.Background(), 1001, "nope"); err == nil || !strings.Contains(err.Error(), "you have no ds01 workload nope in namespace ns") {
		t.Fatalf("find: %v", err)
	}
	w, err := c.Find(context.Background(), 1001, "p")
	if err != nil || w.Object != "p-1001" {
		t.Fatalf("find p: %+v %v", w, err)
	}
	if gone, err := c.Retire(context.Background(), w, 1001, time.Second); err != nil || !gone {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("ns").Get(context.Background(), "p-1002", metav1.GetOptions{}); err != nil {
		t.Errorf("the other user's pod went: %v", err)
	}
	if ws, _ := c.List(context.Background(), 1001); len(ws) != 1 {
		t.Errorf("after retire: %+v", ws)
	}
}

func TestExplainRefusals(t *testing.T) {
	c := &Cluster{Namespace: "ns", Server: "https://k", Context: "lab"}
	gr := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{apierrors.NewForbidden(gr, "p", errors.New(`User "bob" cannot create resource "pods"`)), "ask the cluster's administrator for a RoleBinding"},
		{apierrors.NewForbidden(gr, "p", errors.New("exceeded quota: gpu, requested: requests.nvidia.com/gpu=3, used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=2")), "the quota of namespace ns refuses it"},
		{apierrors.NewForbidden(gr, "p", errors.New(`violates PodSecurity "restricted:latest": restricted volume types (volume "workspace" uses restricted volume type "hostPath")`)), "ask the administrator for workspace_claim"},
		{apierrors.NewUnauthorized("token expired"), `did not accept your credentials (kubeconfig context "lab")`},
	} {
		if got := c.explain(tc.err, "creating Pod p"); !strings.Contains(got.Error(), tc.want) {
			t.Errorf("%v\nexplained as %q, want %q", tc.err, got, tc.want)
		}
	}
}

// A pod another user labelled as this user's, running as themselves, is
// not the user's: list, open and retire pass it by.
func TestForgedLabelsAreNotYours(t *testing.T) {
	cs := fake.NewClientset()
	c := &Cluster{API: fakeAPI{cs}, Namespace: "ns"}
	forged := spec()
	forged.UID = 1002
	obj, _ := kube.Manifest(forged)
	pod := obj.(*corev1.Pod)
	pod.Labels["ds01.user_id"] = "1001"
	pod.Name = "p-1001"
	if _, err := cs.CoreV1().Pods("ns").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ws, err := c.List(context.Background(), 1001); err != nil || len(ws) != 0 {
		t.Fatalf("list shows %+v (%v): a pod running as 1002 is not 1001's", ws, err)
	}
	if _, err := c.Find(context.Background(), 1001, "p"); err == nil {
		t.Fatal("find gave the forged pod")
	}
}

// An API server that errs once while ds01 waits (overloaded, restarted)
// is polled through; one that refuses the read ends the wait with the
// workload named as left there.
func TestAwaitErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"transient", apierrors.NewServiceUnavailable("etcd leader changed"), ""},
		{"refused", apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p-1001", errors.New("no get")), "was created in namespace ns and is left there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			withStatus(cs, corev1.PodStatus{Phase: corev1.PodRunning}, "gpu-a")
			failed := false
			cs.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				if failed && tc.want == "" {
					return false, nil, nil
				}
				failed = true
				return true, nil, tc.err
			})
			c := &Cluster{API: fakeAPI{cs}, Namespace: "ns"}
			obj, _ := kube.Manifest(spec())
			d, err := c.Create(context.Background(), obj, 2*time.Second)
			if tc.want == "" {
				if err != nil || d.Node != "gpu-a" {
					t.Fatalf("%+v %v: want the pod on gpu-a after the error", d, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
