package cluster

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ds01/ds01/assemble/label"
)

// Workload is one of the user's ds01 workloads on the cluster.
type Workload struct {
	Name      string    `json:"name"` // the ds01 name
	Object    string    `json:"object"`
	Kind      string    `json:"kind"` // Pod or Job
	Namespace string    `json:"namespace"`
	Image     string    `json:"image"`
	Phase     string    `json:"phase"`
	Node      string    `json:"node,omitempty"`
	GPUs      string    `json:"gpus,omitempty"`
	Created   time.Time `json:"created"`
	// Pod is the pod to open: the Pod itself, or the Job's newest.
	Pod string `json:"pod,omitempty"`
}

// Deployed is a created workload and where the scheduler put it.
type Deployed struct {
	Workload
	// Started is false for a Job whose pod the cluster has not made
	// within the wait.
	Started bool `json:"started"`
}

// Create creates the manifest's object and waits, at most wait, until
// its pod is on a node and running; a scheduler's refusal or a failed
// pull ends the wait at once.
func (c *Cluster) Create(ctx context.Context, obj metav1.Object, wait time.Duration) (*Deployed, error) {
	var err error
	switch o := obj.(type) {
	case *corev1.Pod:
		err = c.API.CreatePod(ctx, c.Namespace, o)
	case *batchv1.Job:
		err = c.API.CreateJob(ctx, c.Namespace, o)
	default:
		return nil, fmt.Errorf("cluster: cannot create a %T", obj)
	}
	kind := kindOf(obj)
	if apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("you already have %s on the cluster in namespace %s (%s %s): retire it first with ds01 container retire %s --on k8s", obj.GetLabels()[label.Name], c.Namespace, kind, obj.GetName(), obj.GetLabels()[label.Name])
	}
	if err != nil {
		return nil, c.explain(err, "creating "+kind+" "+obj.GetName())
	}
	return c.await(ctx, obj, kind, wait)
}

func kindOf(obj metav1.Object) string {
	if _, ok := obj.(*batchv1.Job); ok {
		return "Job"
	}
	return "Pod"
}

// await polls the workload's pod: the API server's watch would do, but a
// poll is one request every few hundred milliseconds for a few seconds,
// and it cannot miss an event. A transient error (a dropped connection,
// an overloaded API server) is polled through; wait <= 0 does not wait.
func (c *Cluster) await(ctx context.Context, obj metav1.Object, kind string, wait time.Duration) (*Deployed, error) {
	if wait <= 0 {
		return c.deployed(obj, kind, nil, false), nil
	}
	// The wait is a deadline of its own, not the requests' context: a
	// request cut by it (client-go's rate limiter refuses one that would
	// end past it) is the end of the wait, not an error.
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last *corev1.Pod
	for {
		pod, err := c.podOf(ctx, obj, kind)
		switch {
		case err == nil && pod != nil:
			last = pod
			if done, err := c.settled(ctx, obj, kind, pod); done || err != nil {
				return c.deployed(obj, kind, pod, true), err
			}
		case err != nil && ctx.Err() == nil && !transient(err):
			return nil, c.left(obj, kind, c.explain(err, "reading "+obj.GetName()))
		}
		select {
		case <-ctx.Done():
			return nil, c.left(obj, kind, fmt.Errorf("interrupted while waiting for it: %w", ctx.Err()))
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return c.timedOut(obj, kind, last)
		}
	}
}

// left says that the workload was made and stays, whatever went wrong
// after.
func (c *Cluster) left(obj metav1.Object, kind string, err error) error {
	return fmt.Errorf("%s %s was created in namespace %s and is left there (ds01 container list --on k8s shows it, retire --on k8s removes it): %w", kind, obj.GetName(), c.Namespace, err)
}

// settled says whether the pod is where the wait ends: running (or done),
// refused by the scheduler, failed, or unable to pull its image, the last
// of which removes the workload.
func (c *Cluster) settled(ctx context.Context, obj metav1.Object, kind string, pod *corev1.Pod) (bool, error) {
	if pf := pullFailure(pod); pf != nil {
		if err := c.remove(context.WithoutCancel(ctx), kind, obj.GetName(), obj.GetLabels()[label.UserID]); err != nil {
			return true, fmt.Errorf("%w (and removing it failed: %v)", pf, err)
		}
		return true, pf
	}
	switch pod.Status.Phase {
	case corev1.PodRunning, corev1.PodSucceeded:
		return true, nil
	case corev1.PodFailed:
		return true, failure(obj.GetName(), pod)
	}
	if cond := scheduled(pod); cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
		return true, &Pending{Name: obj.GetName(), Namespace: c.Namespace, Reason: cond.Reason, Message: cond.Message}
	}
	return false, nil
}

func (c *Cluster) timedOut(obj metav1.Object, kind string, pod *corev1.Pod) (*Deployed, error) {
	switch {
	case pod == nil && kind == "Job":
		// The cluster's job controller makes the pod; it has not yet.
		return c.deployed(obj, kind, nil, false), nil
	case pod == nil || pod.Spec.NodeName == "":
		p := &Pending{Name: obj.GetName(), Namespace: c.Namespace}
		if cond := scheduled(pod); cond != nil {
			p.Reason, p.Message = cond.Reason, cond.Message
		}
		return c.deployed(obj, kind, pod, true), p
	}
	// On a node and still starting (pulling an 18 GB base, say): placed,
	// which is what the user waited for.
	return c.deployed(obj, kind, pod, true), nil
}

func scheduled(pod *corev1.Pod) *corev1.PodCondition {
	if pod == nil {
		return nil
	}
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodScheduled {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

var pullReasons = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true}

func pullFailure(pod *corev1.Pod) *PullFailed {
	for _, s := range pod.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil && pullReasons[w.Reason] {
			return &PullFailed{Image: s.Image, Node: pod.Spec.NodeName, Reason: w.Reason, Message: w.Message}
		}
	}
	return nil
}

func failure(name string, pod *corev1.Pod) error {
	f := &Failed{Name: name, Reason: pod.Status.Reason, Message: pod.Status.Message}
	for _, s := range pod.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			f.Reason, f.Message, f.ExitCode = t.Reason, t.Message, t.ExitCode
		}
	}
	return f
}

// podOf is the Pod, or the Job's newest pod; nil when there is none yet.
func (c *Cluster) podOf(ctx context.Context, obj metav1.Object, kind string) (*corev1.Pod, error) {
	if kind == "Pod" {
		return c.API.GetPod(ctx, c.Namespace, obj.GetName())
	}
	pods, err := c.API.ListPods(ctx, c.Namespace, jobPods(obj.GetName(), obj.GetLabels()[label.UserID]))
	if err != nil || len(pods.Items) == 0 {
		return nil, err
	}
	sort.Slice(pods.Items, func(i, j int) bool {
		return pods.Items[i].CreationTimestamp.After(pods.Items[j].CreationTimestamp.Time)
	})
	return &pods.Items[0], nil
}

func (c *Cluster) deployed(obj metav1.Object, kind string, pod *corev1.Pod, started bool) *Deployed {
	w := Workload{
		Name: obj.GetLabels()[label.Name], Object: obj.GetName(), Kind: kind, Namespace: c.Namespace,
		Created: obj.GetCreationTimestamp().Time,
	}
	if pod != nil {
		fillFromPod(&w, pod)
	}
	return &Deployed{Workload: w, Started: started && pod != nil}
}

func fillFromPod(w *Workload, pod *corev1.Pod) {
	w.Pod, w.Node, w.Phase = pod.Name, pod.Spec.NodeName, string(pod.Status.Phase)
	if w.Created.IsZero() {
		w.Created = pod.CreationTimestamp.Time
	}
	for _, ct := range pod.Spec.Containers {
		w.Image = ct.Image
		for name, q := range ct.Resources.Limits {
			if strings.HasSuffix(string(name), "/gpu") {
				w.GPUs = strconv.FormatInt(q.Value(), 10)
			}
		}
	}
}
