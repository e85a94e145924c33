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
	if gone, err := c.Retire(context.Background(), w, time.Second); err != nil || !gone {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("ns").Get(context.Background(), "p-1002", metav1.GetOptions{}); err != nil {
		t.Errorf("the other user's pod went: %v", err)
	}
	if ws, _ := c.List(context.Background(), 1001); len(ws) != 1 {
		t.Errorf("after retire: %+v", ws)
	}
}
