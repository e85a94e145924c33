package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/distribution/reference"

	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/deploy/kube"
	"github.com/ds01/ds01/deploy/kube/cluster"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/serve/policy"
)

// KubeDeploy is container deploy --on k8s's request.
type KubeDeploy struct {
	Name    string
	Cluster cluster.Options
	// GPUs is a count; all and device lists are the local engine's.
	GPUs    string
	Job     bool
	Command []string
	DryRun  bool
	// Wait bounds how long deploy waits for the scheduler and the node.
	Wait time.Duration
}

// KubeDeployed says what container deploy --on k8s made, or with a dry
// run would make.
type KubeDeployed struct {
	Image    string
	Manifest []byte // YAML, for a dry run
	*cluster.Deployed
}

// ErrKubeActsForUser is a Kubernetes call that would be made as root for
// a user: the cluster knows users by their own credentials, which root's
// process must not read out of their home and use.
var ErrKubeActsForUser = errors.New("--on k8s runs with your own kubeconfig and credentials, in your own process: run ds01 as yourself, without sudo or --user")

// KubeAllowed refuses --on k8s for root (workloads never run as root)
// and for root acting for a user; it comes before anything of the user's
// or the administrator's is read.
func KubeAllowed(id identity.Identity) error {
	if id.ActsForUser() || id.Sudo {
		return ErrKubeActsForUser
	}
	if id.UID == 0 {
		return errors.New("--on k8s runs workloads as their user, never as root: run it as that user, with their kubeconfig")
	}
	return nil
}

// KubeImage is the image of the project that a cluster can pull: its
// newest push (or where it was pulled from), by digest, refused when the
// image was rebuilt since.
func (o *Ops) KubeImage(id identity.Identity, project string) (string, error) {
	recs, err := o.Records(id)
	if err != nil {
		return "", err
	}
	defer recs.Close()
	rec, err := recs.Read(project)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("you have no image %s (no record of it): make it with ds01 image create %s, push it with ds01 image push %s, then deploy it on the cluster", project, project, project)
	}
	if err != nil {
		return "", err
	}
	return pushedRef(rec)
}

func pushedRef(rec record.Record) (string, error) {
	var at *record.Pushed
	pushed := len(rec.Pushed) > 0
	if pushed {
		at = &rec.Pushed[len(rec.Pushed)-1]
	} else if rec.Pulled != nil {
		at = rec.Pulled
	}
	if at == nil {
		return "", fmt.Errorf("%s has not been pushed to a registry, and a cluster pulls its images from one: run ds01 image push %s first", rec.Project, rec.Project)
	}
	// A pulled image is made where it came from; a pushed one may have
	// been made again here since.
	if at.ImageID != "" && at.ImageID != rec.ImageID {
		return "", fmt.Errorf("%s has changed here (image %s) since it was pushed as %s (container retire --save, or a rebuild), so the cluster would run the old image: run ds01 image push %s first", rec.Project, rec.ImageID, at.ImageID, rec.Project)
	}
	if pushed && rec.BuiltAt.After(at.At) {
		return "", fmt.Errorf("%s was made again (%s) after its last push (%s), so the cluster would run the old image: run ds01 image push %s first", rec.Project, rec.BuiltAt.Format(time.RFC3339), at.At.Format(time.RFC3339), rec.Project)
	}
	named, err := reference.ParseNormalizedNamed(at.Repo)
	if err != nil {
		return "", fmt.Errorf("the record of %s: %w", rec.Project, err)
	}
	return named.Name() + "@" + at.Digest, nil
}

// kubeGPUs is --gpus as a count the scheduler can place.
func (o *Ops) kubeGPUs(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--gpus %q: on Kubernetes give a count (--gpus 2); the scheduler picks the node and the device plugin the GPUs, so all and device= lists have no meaning there", s)
	}
	if m := o.Kube.MaxGPUs; m > 0 && n > m {
		return 0, fmt.Errorf("--gpus %d: the administrator's setting lets one workload ask for at most %d on the cluster (kubernetes.max_gpus)", n, m)
	}
	return n, nil
}

// KubeSpec is the manifest's input for id, from the request and the
// administrator's settings.
func (o *Ops) KubeSpec(id identity.Identity, r KubeDeploy, image, namespace string) (kube.Spec, error) {
	gpus, err := o.kubeGPUs(r.GPUs)
	if err != nil {
		return kube.Spec{}, err
	}
	k := o.Kube
	uid := strconv.FormatUint(uint64(id.UID), 10)
	dnsName := kube.DNSName(id.Name) // h_baker is no Kubernetes name
	s := kube.Spec{
		Name: r.Name, Namespace: namespace, Image: image,
		UID: id.UID, GID: id.GID, User: id.Name, Login: id.Login,
		GPUs: gpus, GPUResource: k.GPUResource, Job: r.Job, Command: r.Command,
		AllowPrivilegeEscalation: k.AllowPrivilegeEscalation, ShmSize: int64(k.ShmSize),
		PullSecret: k.ImagePullSecret, Version: o.Version,
	}
	for _, g := range id.Groups {
		s.Groups = append(s.Groups, g.GID)
	}
	if k.WorkspaceClaim != "" {
		s.Workspace = kube.Workspace{Claim: policy.Expand(k.WorkspaceClaim, dnsName, uid, r.Name), SubPath: r.Name}
	} else if k.WorkspacePath != "" {
		s.Workspace = kube.Workspace{Path: policy.Expand(k.WorkspacePath, id.Name, uid, r.Name)}
	}
	return s, s.Check()
}

// KubeCluster connects to the cluster as id, with id's own kubeconfig.
func (o *Ops) KubeCluster(id identity.Identity, opts cluster.Options) (*cluster.Cluster, error) {
	if err := KubeAllowed(id); err != nil {
		return nil, err
	}
	opts.DefaultNamespace = o.kubeNamespace(id)
	return cluster.Connect(opts)
}

// kubeNamespace is the administrator's namespace for id; "" for none.
func (o *Ops) kubeNamespace(id identity.Identity) string {
	if o.Kube.Namespace == "" {
		return ""
	}
	return policy.Expand(o.Kube.Namespace, kube.DNSName(id.Name), strconv.FormatUint(uint64(id.UID), 10), "")
}

// DeployKube makes the user's workload on the cluster from the project's
// pushed image, or with DryRun says what it would make without calling
// the cluster.
func (o *Ops) DeployKube(ctx context.Context, id identity.Identity, r KubeDeploy, ev Events) (*KubeDeployed, error) {
	if err := kube.CheckName(r.Name); err != nil {
		return nil, err
	}
	c, err := o.KubeCluster(id, r.Cluster)
	if err != nil && !(r.DryRun && errors.Is(err, cluster.ErrNoKubeconfig)) {
		return nil, err
	}
	ns := firstOf(r.Cluster.Namespace, o.kubeNamespace(id), "default")
	if c != nil {
		ns = c.Namespace
	}
	image, err := o.KubeImage(id, r.Name)
	if err != nil {
		return nil, err
	}
	spec, err := o.KubeSpec(id, r, image, ns)
	if err != nil {
		return nil, err
	}
	if spec.Workspace == (kube.Workspace{}) {
		ev.warn("the administrator names no workspace for the cluster (kubernetes.workspace_claim or workspace_path), so /workspace is an emptyDir: what you keep there goes with the pod")
	}
	obj, err := kube.Manifest(spec)
	if err != nil {
		return nil, err
	}
	res := &KubeDeployed{Image: image}
	if r.DryRun {
		res.Manifest, err = kube.YAML(obj)
		return res, err
	}
	res.Deployed, err = c.Create(ctx, obj, r.Wait)
	return res, err
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// ListKube is id's workloads in the namespace.
func (o *Ops) ListKube(ctx context.Context, id identity.Identity, opts cluster.Options) ([]cluster.Workload, error) {
	c, err := o.KubeCluster(id, opts)
	if err != nil {
		return nil, err
	}
	return c.List(ctx, id.UID)
}

// KubeRetired is what container retire --on k8s removed.
type KubeRetired struct {
	cluster.Workload
	// Terminating is a pod its node has not stopped within the wait.
	Terminating bool
}

// RetireKube removes id's workload called name.
func (o *Ops) RetireKube(ctx context.Context, id identity.Identity, opts cluster.Options, name string) (*KubeRetired, error) {
	c, w, err := o.findKube(ctx, id, opts, name)
	if err != nil {
		return nil, err
	}
	gone, err := c.Retire(ctx, w, id.UID, 45*time.Second)
	return &KubeRetired{Workload: w, Terminating: !gone}, err
}

// OpenKube runs a session in id's workload called name: by default a
// login shell, as container open does locally.
func (o *Ops) OpenKube(ctx context.Context, id identity.Identity, opts cluster.Options, name string, s cluster.Session) error {
	c, w, err := o.findKube(ctx, id, opts, name)
	if err != nil {
		return err
	}
	if len(s.Command) == 0 {
		s.Command = []string{"bash", "-l"}
	}
	return c.Exec(ctx, w, s)
}

func (o *Ops) findKube(ctx context.Context, id identity.Identity, opts cluster.Options, name string) (*cluster.Cluster, cluster.Workload, error) {
	if err := kube.CheckName(name); err != nil {
		return nil, cluster.Workload{}, err
	}
	c, err := o.KubeCluster(id, opts)
	if err != nil {
		return nil, cluster.Workload{}, err
	}
	w, err := c.Find(ctx, id.UID, name)
	return c, w, err
}
