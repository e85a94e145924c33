package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Kubernetes is the lab's convention for container deploy --on k8s. The
// user's own ds01 reads it and makes the manifest; the cluster's RBAC,
// quotas and Pod Security admission are what hold a user to it, as the
// user could write a manifest of their own.
type Kubernetes struct {
	// Namespace is each user's default namespace when neither --namespace
	// nor the kubeconfig's context names one; {name} and {uid} are
	// replaced. "" is "default".
	Namespace string `toml:"namespace"`
	// WorkspaceClaim names each user's PersistentVolumeClaim ({name},
	// {uid}); the project's workspace is its sub-directory {project}.
	WorkspaceClaim string `toml:"workspace_claim"`
	// WorkspacePath is a directory every node has ({name}, {uid},
	// {project}), bound as a hostPath that must exist. Neither: an
	// emptyDir, gone with the pod.
	WorkspacePath string `toml:"workspace_path"`
	// AllowPrivilegeEscalation lets setuid programs (the image's sudo)
	// work in pods; off, sudo fails there.
	AllowPrivilegeEscalation bool `toml:"allow_privilege_escalation"`
	// GPUResource is the resource GPUs are counted in.
	GPUResource string `toml:"gpu_resource"`
	// MaxGPUs caps --gpus of one workload; 0 leaves it to the cluster's
	// quota.
	MaxGPUs int `toml:"max_gpus"`
	// ShmSize bounds /dev/shm (a memory emptyDir); 0 leaves it to the
	// pod's memory.
	ShmSize Bytes `toml:"shm_size"`
	// ImagePullSecret is a Secret in each namespace with the registry's
	// credentials; "" when the nodes can pull without.
	ImagePullSecret string `toml:"image_pull_secret"`
}

var placeholder = regexp.MustCompile(`\{[a-z]*\}`)

// Expand replaces the placeholders of a template.
func Expand(template, name, uid, project string) string {
	return strings.NewReplacer("{name}", name, "{uid}", uid, "{project}", project).Replace(template)
}

func checkTemplate(key, t string, allowed ...string) error {
	for _, p := range placeholder.FindAllString(t, -1) {
		ok := false
		for _, a := range allowed {
			ok = ok || p == a
		}
		if !ok {
			return fmt.Errorf("kubernetes.%s %q: %s is not one of %s", key, t, p, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func (k *Kubernetes) check() error {
	var errs []error
	sample := func(t string) string { return Expand(t, "h-baker", "1722830498", "p") }
	if k.Namespace != "" {
		errs = append(errs, checkTemplate("namespace", k.Namespace, "{name}", "{uid}"))
		if v := validation.IsDNS1123Label(sample(k.Namespace)); len(v) > 0 {
			errs = append(errs, fmt.Errorf("kubernetes.namespace %q does not make a namespace name: %s", k.Namespace, strings.Join(v, "; ")))
		}
	}
	if k.WorkspaceClaim != "" {
		errs = append(errs, checkTemplate("workspace_claim", k.WorkspaceClaim, "{name}", "{uid}"))
		if v := validation.IsDNS1123Subdomain(sample(k.WorkspaceClaim)); len(v) > 0 {
			errs = append(errs, fmt.Errorf("kubernetes.workspace_claim %q does not make a claim name: %s", k.WorkspaceClaim, strings.Join(v, "; ")))
		}
	}
	if k.WorkspacePath != "" {
		errs = append(errs, checkTemplate("workspace_path", k.WorkspacePath, "{name}", "{uid}", "{project}"), absPath("kubernetes.workspace_path", k.WorkspacePath))
	}
	if k.WorkspaceClaim != "" && k.WorkspacePath != "" {
		errs = append(errs, errors.New("kubernetes: give workspace_claim or workspace_path, not both"))
	}
	if v := validation.IsQualifiedName(k.GPUResource); len(v) > 0 {
		errs = append(errs, fmt.Errorf("kubernetes.gpu_resource %q: %s", k.GPUResource, strings.Join(v, "; ")))
	}
	if k.MaxGPUs < 0 {
		errs = append(errs, fmt.Errorf("kubernetes.max_gpus %d is negative", k.MaxGPUs))
	}
	if k.ImagePullSecret != "" {
		if v := validation.IsDNS1123Subdomain(k.ImagePullSecret); len(v) > 0 {
			errs = append(errs, fmt.Errorf("kubernetes.image_pull_secret %q: %s", k.ImagePullSecret, strings.Join(v, "; ")))
		}
	}
	return errors.Join(errs...)
}
