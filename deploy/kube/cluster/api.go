package cluster

import (
	"context"
	"fmt"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// API is the part of the Kubernetes API ds01 calls. It is this small
// rather than client-go's clientset because the clientset registers every
// API group of Kubernetes when the program starts: +50 MB of binary and
// +25 MB and 10 ms at the start of every ds01 command, Docker-only ones
// too.
type API interface {
	CreatePod(ctx context.Context, ns string, p *corev1.Pod) error
	CreateJob(ctx context.Context, ns string, j *batchv1.Job) error
	GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error)
	ListPods(ctx context.Context, ns, selector string) (*corev1.PodList, error)
	ListJobs(ctx context.Context, ns, selector string) (*batchv1.JobList, error)
	DeletePod(ctx context.Context, ns, name string) error
	DeleteJob(ctx context.Context, ns, name string) error
	DeletePods(ctx context.Context, ns, selector string) error
	// ExecURL is where a pod's exec subresource is reached.
	ExecURL(ns, pod string, opts *corev1.PodExecOptions) string
}

// scheme knows only the types ds01 sends and reads; made at first use,
// not at every ds01 command's start.
var scheme = sync.OnceValue(func() *runtime.Scheme {
	s := runtime.NewScheme()
	must(corev1.AddToScheme(s))
	must(batchv1.AddToScheme(s))
	return s
})

func must(err error) {
	if err != nil {
		panic(err)
	}
}

var params = sync.OnceValue(func() runtime.ParameterCodec { return runtime.NewParameterCodec(scheme()) })

type restAPI struct{ core, batch rest.Interface }

func newRESTAPI(cfg *rest.Config) (*restAPI, error) {
	core, err := restFor(cfg, "/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	batch, err := restFor(cfg, "/apis", batchv1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return &restAPI{core: core, batch: batch}, nil
}

func restFor(cfg *rest.Config, prefix string, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.APIPath, c.GroupVersion = prefix, &gv
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme()).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	r, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return r, nil
}

func (a *restAPI) CreatePod(ctx context.Context, ns string, p *corev1.Pod) error {
	return a.core.Post().Namespace(ns).Resource("pods").Body(p).Do(ctx).Into(&corev1.Pod{})
}

func (a *restAPI) CreateJob(ctx context.Context, ns string, j *batchv1.Job) error {
	return a.batch.Post().Namespace(ns).Resource("jobs").Body(j).Do(ctx).Into(&batchv1.Job{})
}

func (a *restAPI) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	if err := a.core.Get().Namespace(ns).Resource("pods").Name(name).Do(ctx).Into(p); err != nil {
		return nil, err
	}
	return p, nil
}

func (a *restAPI) ListPods(ctx context.Context, ns, selector string) (*corev1.PodList, error) {
	l := &corev1.PodList{}
	err := a.core.Get().Namespace(ns).Resource("pods").VersionedParams(&metav1.ListOptions{LabelSelector: selector}, params()).Do(ctx).Into(l)
	return l, err
}

func (a *restAPI) ListJobs(ctx context.Context, ns, selector string) (*batchv1.JobList, error) {
	l := &batchv1.JobList{}
	err := a.batch.Get().Namespace(ns).Resource("jobs").VersionedParams(&metav1.ListOptions{LabelSelector: selector}, params()).Do(ctx).Into(l)
	return l, err
}

var background = func() *metav1.DeleteOptions {
	bg := metav1.DeletePropagationBackground
	return &metav1.DeleteOptions{PropagationPolicy: &bg}
}

func (a *restAPI) DeletePod(ctx context.Context, ns, name string) error {
	return a.core.Delete().Namespace(ns).Resource("pods").Name(name).Body(background()).Do(ctx).Error()
}

func (a *restAPI) DeleteJob(ctx context.Context, ns, name string) error {
	return a.batch.Delete().Namespace(ns).Resource("jobs").Name(name).Body(background()).Do(ctx).Error()
}

func (a *restAPI) DeletePods(ctx context.Context, ns, selector string) error {
	return a.core.Delete().Namespace(ns).Resource("pods").VersionedParams(&metav1.ListOptions{LabelSelector: selector}, params()).Body(&metav1.DeleteOptions{}).Do(ctx).Error()
}

func (a *restAPI) ExecURL(ns, pod string, opts *corev1.PodExecOptions) string {
	return a.core.Post().Namespace(ns).Resource("pods").Name(pod).SubResource("exec").VersionedParams(opts, params()).URL().String()
}
