// Package kube is a user's ds01 container as a Kubernetes workload: the
// Pod or Job manifest ds01 makes for them from a pushed image, which runs
// as the user's own UID, GID and groups and never as root. It is pure:
// talking to a cluster is package kube/cluster's.
package kube

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/ds01/ds01/assemble/label"
)

// Workspace is where /workspace comes from on the cluster: a claim of the
// user's (its sub-directory for the project), a directory every node has
// (an NFS mount the lab shares, say), or neither, when the workspace is
// an emptyDir that goes with the pod.
type Workspace struct {
	Claim   string // PersistentVolumeClaim name
	SubPath string // within the claim
	Path    string // hostPath, which must exist on the node
}

// Spec is one request, with the administrator's settings already applied.
type Spec struct {
	Name      string // the ds01 name, as for docker (may hold '_')
	Namespace string
	Image     string // a pullable reference, best by digest
	UID, GID  uint32
	Groups    []uint32 // supplementary, LDAP groups included
	User      string   // the name images use (h-baker)
	Login     string
	GPUs      int
	// GPUResource is the extended resource GPUs are asked for by
	// (nvidia.com/gpu).
	GPUResource string
	// Job makes a Job that runs Command once, instead of a Pod that
	// stays up with a terminal to open.
	Job     bool
	Command []string
	// AllowPrivilegeEscalation lets setuid programs (sudo) work; the
	// administrator's choice, off by default.
	AllowPrivilegeEscalation bool
	ShmSize                  int64 // bytes; 0 leaves /dev/shm bounded by the pod's memory
	Workspace                Workspace
	PullSecret               string
	Version                  string // ds01's
}

// Role is the label key that tells a ds01 workload's pods apart from
// other pods of the user's in the namespace.
const Role = "ds01.managed"

// DNSName is a ds01 name (a project, a user name) as Kubernetes names
// take it: '_' and '.' become '-'.
func DNSName(name string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(name)
}

// ObjectName is the Kubernetes name of the user's workload called name,
// with the UID to keep two users' workloads in one namespace apart.
func ObjectName(name string, uid uint32) string {
	return fmt.Sprintf("%s-%d", DNSName(name), uid)
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`)

// CheckName says what is wrong with a workload's ds01 name (the
// project's), before anything is looked up by it.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q: use lowercase letters, digits, and '.', '_' or '-' between them", name)
	}
	return nil
}

// Check says what is wrong with a spec, in the user's terms.
func (s Spec) Check() error {
	if err := CheckName(s.Name); err != nil {
		return err
	}
	if errs := validation.IsDNS1123Label(ObjectName(s.Name, s.UID)); len(errs) > 0 {
		return fmt.Errorf("name %q is too long for Kubernetes (%s)", s.Name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(s.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", s.Namespace, strings.Join(errs, "; "))
	}
	if s.UID == 0 || s.GID == 0 {
		return fmt.Errorf("ds01 runs workloads on Kubernetes as the user, never as root (UID %d, GID %d)", s.UID, s.GID)
	}
	if s.Job && len(s.Command) == 0 {
		return fmt.Errorf("--job runs a command: give it after --, e.g. --job -- python train.py")
	}
	if s.GPUs < 0 {
		return fmt.Errorf("--gpus %d: give a count", s.GPUs)
	}
	if s.Workspace.Claim != "" && s.Workspace.Path != "" {
		return fmt.Errorf("the workspace is a claim or a path, not both")
	}
	return nil
}

// Labels are what marks the workload as the user's ds01 one; a list and a
// retire select by them, never by name alone.
func (s Spec) Labels() map[string]string {
	return map[string]string{
		Role:               "true",
		label.Name:         s.Name,
		label.UserID:       strconv.FormatUint(uint64(s.UID), 10),
		label.GroupID:      strconv.FormatUint(uint64(s.GID), 10),
		label.Username:     s.User,
		label.AIMEUserID:   strconv.FormatUint(uint64(s.UID), 10),
		label.AIMEGroupID:  strconv.FormatUint(uint64(s.GID), 10),
		label.AIMEUsername: s.User,
	}
}

// Manifest is the Pod, or with Job the Job, for the spec.
func Manifest(s Spec) (metav1.Object, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	meta := metav1.ObjectMeta{
		Name: ObjectName(s.Name, s.UID), Namespace: s.Namespace, Labels: s.Labels(),
		Annotations: map[string]string{label.Login: s.Login, label.Version: s.Version},
	}
	pod := s.podSpec()
	if !s.Job {
		return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: meta, Spec: pod}, nil
	}
	pod.RestartPolicy = corev1.RestartPolicyNever
	backoff := int32(0)
	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: meta,
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: s.Labels()},
				Spec:       pod,
			},
		},
	}, nil
}

// YAML is the manifest as kubectl apply takes it.
func YAML(obj metav1.Object) ([]byte, error) {
	return yaml.Marshal(obj)
}

func (s Spec) podSpec() corev1.PodSpec {
	uid, gid := int64(s.UID), int64(s.GID)
	groups := make([]int64, 0, len(s.Groups))
	for _, g := range s.Groups {
		if g != s.GID {
			groups = append(groups, int64(g))
		}
	}
	yes, no := true, false
	ps := corev1.PodSpec{
		// No fsGroup: it would chown every file of every volume to it,
		// recursively, at each start (hours on a big dataset), and the
		// user's files are theirs already.
		SecurityContext: &corev1.PodSecurityContext{
			RunAsUser: &uid, RunAsGroup: &gid, SupplementalGroups: groups, RunAsNonRoot: &yes,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		AutomountServiceAccountToken: &no,
		Hostname:                     hostname(s.Name),
		Containers:                   []corev1.Container{s.container()},
		Volumes:                      s.volumes(),
		RestartPolicy:                corev1.RestartPolicyAlways,
	}
	if s.PullSecret != "" {
		ps.ImagePullSecrets = []corev1.LocalObjectReference{{Name: s.PullSecret}}
	}
	return ps
}

func hostname(name string) string {
	h := DNSName(name)
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-")
	}
	return h
}

func (s Spec) container() corev1.Container {
	esc := s.AllowPrivilegeEscalation
	c := corev1.Container{
		Name: "ds01", Image: s.Image, WorkingDir: "/workspace",
		ImagePullPolicy: corev1.PullIfNotPresent,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &esc,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "workspace", MountPath: "/workspace", SubPath: s.Workspace.SubPath},
			{Name: "shm", MountPath: "/dev/shm"},
		},
	}
	if esc {
		// sudo needs root's capabilities back once it is root; the rest
		// stay dropped as on ds01's own containers.
		c.SecurityContext.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"MKNOD", "SETFCAP", "NET_RAW"}}
	}
	if s.Workspace.Claim == "" {
		c.VolumeMounts[0].SubPath = ""
	}
	if s.Job {
		c.Command = s.Command
	} else {
		// As docker run -it: the image's shell stays up on a terminal
		// that container open attaches to.
		c.Stdin, c.TTY = true, true
	}
	if s.GPUs > 0 {
		q := *resource.NewQuantity(int64(s.GPUs), resource.DecimalSI)
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceName(s.GPUResource): q}
	} else {
		// CUDA images say NVIDIA_VISIBLE_DEVICES=all, which the NVIDIA
		// runtime reads as every GPU of the node; void gives none.
		c.Env = []corev1.EnvVar{{Name: "NVIDIA_VISIBLE_DEVICES", Value: "void"}}
	}
	return c
}

func (s Spec) volumes() []corev1.Volume {
	shm := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
	if s.ShmSize > 0 {
		shm.SizeLimit = resource.NewQuantity(s.ShmSize, resource.BinarySI)
	}
	ws := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	switch {
	case s.Workspace.Claim != "":
		ws = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: s.Workspace.Claim}}
	case s.Workspace.Path != "":
		dir := corev1.HostPathDirectory
		ws = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: s.Workspace.Path, Type: &dir}}
	}
	return []corev1.Volume{
		{Name: "workspace", VolumeSource: ws},
		{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: shm}},
	}
}
