package cluster

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy/kube"
)

// selector picks the user's ds01 workloads, and with name only that one:
// by labels, as a name alone could be anyone's.
func selector(uid uint32, name string) string {
	set := labels.Set{kube.Role: "true", label.UserID: strconv.FormatUint(uint64(uid), 10)}
	if name != "" {
		set[label.Name] = name
	}
	return labels.SelectorFromSet(set).String()
}

// jobPods picks a Job's pods, and only those ds01 made for the user.
func jobPods(job, uid string) string {
	return labels.SelectorFromSet(labels.Set{batchv1.JobNameLabel: job, kube.Role: "true", label.UserID: uid}).String()
}

// runsAs says whether a pod runs as uid. Labels are anyone's to write in
// a namespace they share: a pod labelled as the user's that would run as
// someone else is not theirs to open or retire.
func runsAs(spec *corev1.PodSpec, uid uint32) bool {
	sc := spec.SecurityContext
	return sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == int64(uid)
}

// List is the user's ds01 workloads in the namespace: Pods, and Jobs with
// their newest pod; a Job's pods are not listed apart.
func (c *Cluster) List(ctx context.Context, uid uint32) ([]Workload, error) {
	return c.list(ctx, uid, "")
}

func (c *Cluster) list(ctx context.Context, uid uint32, name string) ([]Workload, error) {
	sel := selector(uid, name)
	pods, err := c.API.ListPods(ctx, c.Namespace, sel)
	if err != nil {
		return nil, c.explain(err, "listing pods")
	}
	jobs, err := c.API.ListJobs(ctx, c.Namespace, sel)
	if err != nil {
		return nil, c.explain(err, "listing jobs")
	}
	var out []Workload
	newest := map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !runsAs(&p.Spec, uid) {
			continue
		}
		if job := p.Labels[batchv1.JobNameLabel]; job != "" {
			if n := newest[job]; n == nil || p.CreationTimestamp.After(n.CreationTimestamp.Time) {
				newest[job] = p
			}
			continue
		}
		w := Workload{Name: p.Labels[label.Name], Object: p.Name, Kind: "Pod", Namespace: c.Namespace}
		fillFromPod(&w, p)
		out = append(out, w)
	}
	for _, j := range jobs.Items {
		if runsAs(&j.Spec.Template.Spec, uid) {
			out = append(out, jobWorkload(c.Namespace, &j, newest[j.Name]))
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

func jobWorkload(ns string, j *batchv1.Job, pod *corev1.Pod) Workload {
	w := Workload{Name: j.Labels[label.Name], Object: j.Name, Kind: "Job", Namespace: ns, Created: j.CreationTimestamp.Time}
	if pod != nil {
		fillFromPod(&w, pod)
	} else {
		w.Phase = "no pod yet"
		for _, ct := range j.Spec.Template.Spec.Containers {
			w.Image = ct.Image
		}
	}
	switch {
	case j.Status.Succeeded > 0:
		w.Phase = "Succeeded"
	case j.Status.Failed > 0:
		w.Phase = "Failed"
	}
	return w
}

// Find is the user's workload called name (the ds01 name).
func (c *Cluster) Find(ctx context.Context, uid uint32, name string) (Workload, error) {
	ws, err := c.list(ctx, uid, name)
	if err != nil {
		return Workload{}, err
	}
	if len(ws) == 0 {
		return Workload{}, fmt.Errorf("you have no ds01 workload %s in namespace %s (ds01 container list --on k8s shows yours; --namespace picks another)", name, c.Namespace)
	}
	return ws[0], nil
}

// Retire removes the workload, a Job with its pods, and waits at most
// wait for the pod to be gone: a pod on a node goes only once the node
// has stopped it, and until then the name is taken. It says whether the
// pod is gone.
func (c *Cluster) Retire(ctx context.Context, w Workload, uid uint32, wait time.Duration) (gone bool, err error) {
	if err := c.remove(ctx, w.Kind, w.Object, strconv.FormatUint(uint64(uid), 10)); err != nil {
		return false, err
	}
	if w.Pod == "" {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		_, err := c.API.GetPod(ctx, c.Namespace, w.Pod)
		switch {
		case apierrors.IsNotFound(err):
			return true, nil
		case err != nil && ctx.Err() == nil && !transient(err):
			return false, c.explain(err, "waiting for "+w.Pod+" to go")
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Cluster) remove(ctx context.Context, kind, name, uid string) error {
	var err error
	if kind == "Job" {
		err = c.API.DeleteJob(ctx, c.Namespace, name)
		if err == nil {
			// Deleting a Job leaves its pods to the garbage collector;
			// ds01 does not wait for it to come round.
			err = c.API.DeletePods(ctx, c.Namespace, jobPods(name, uid))
		}
	} else {
		err = c.API.DeletePod(ctx, c.Namespace, name)
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	return c.explain(err, "removing "+kind+" "+name)
}
