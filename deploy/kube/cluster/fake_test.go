package cluster

import (
	"context"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeAPI is client-go's fake clientset as the API: the test binary may
// carry the whole clientset, ds01's may not (see API).
type fakeAPI struct{ cs *fake.Clientset }

func (f fakeAPI) CreatePod(ctx context.Context, ns string, p *corev1.Pod) error {
	_, err := f.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	return err
}

func (f fakeAPI) CreateJob(ctx context.Context, ns string, j *batchv1.Job) error {
	_, err := f.cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
	return err
}

func (f fakeAPI) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	p, err := f.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err // as the REST API does: no empty pod beside an error
	}
	return p, nil
}

func (f fakeAPI) ListPods(ctx context.Context, ns, sel string) (*corev1.PodList, error) {
	return f.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
}

func (f fakeAPI) ListJobs(ctx context.Context, ns, sel string) (*batchv1.JobList, error) {
	return f.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
}

func (f fakeAPI) DeletePod(ctx context.Context, ns, name string) error {
	return f.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})
}

func (f fakeAPI) DeleteJob(ctx context.Context, ns, name string) error {
	return f.cs.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{})
}

func (f fakeAPI) DeletePods(ctx context.Context, ns, sel string) error {
	return f.cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel})
}

func (f fakeAPI) ExecURL(ns, pod string, _ *corev1.PodExecOptions) string {
	return "https://fake/api/v1/namespaces/" + ns + "/pods/" + pod + "/exec"
}
