package serve

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/api"
	"github.com/ds01/ds01/internal/serve/policy"
	"github.com/ds01/ds01/registry"
)

// gpuEnv are the variables that choose GPUs in a container: set by the
// device request ds01 makes, never by the user, or they would widen what
// it granted.
var gpuEnv = []string{"NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}

// Rules is the policy's word on each request, before it runs. Root is
// not asked: root may do directly whatever it asks the service for.
type Rules struct {
	Policy  policy.Policy
	Catalog []registry.CatalogEntry
	// NoGPUs, when set, is why the machine has none to grant.
	NoGPUs string
}

// Check is the api.Check of the rules.
func (r Rules) Check(id identity.Identity, _ string, req any) error {
	if ops.Everyone(id) {
		return nil
	}
	switch q := req.(type) {
	case ops.ImageCreate:
		if err := r.base(id, q.BaseRef); err != nil {
			return err
		}
		return envRule(q.Env)
	case ops.ContainerDeploy:
		return r.deploy(id, q)
	case ops.ImagePull:
		if q.Force {
			// --force builds on the pulled image as a base.
			return r.base(id, q.Ref)
		}
	}
	return nil
}

// base allows the user's own images, the catalog's, and what the policy
// lists; whether a ref is the catalog's is the server's catalog's word,
// never the request's.
func (r Rules) base(id identity.Identity, ref string) error {
	if strings.HasPrefix(ref, label.UserRepo(id.UID)) {
		return nil
	}
	inCatalog := slices.ContainsFunc(r.Catalog, func(e registry.CatalogEntry) bool { return e.Image == ref })
	if r.Policy.Bases.BaseAllowed(ref, inCatalog) {
		return nil
	}
	return &api.PolicyError{Rule: "bases", Why: fmt.Sprintf("base %s is not one this server's policy lets users build on (the AIME catalog, the listed registries and images, or your own ds01-%d/… images); pick one with --framework, or ask an administrator to list it", ref, id.UID)}
}

func envRule(env []string) error {
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(gpuEnv, k) {
			return &api.PolicyError{Rule: "gpu-env", Why: fmt.Sprintf("--env %s would choose GPUs beside the device request; ask for GPUs with container deploy --gpus", k)}
		}
	}
	return nil
}

// deploy checks a container: its image's base, its GPUs and its data
// directories (in the user's home or listed by the administrator,
// resolved as the user).
func (r Rules) deploy(id identity.Identity, q ops.ContainerDeploy) error {
	if q.Image != "" {
		if err := r.base(id, q.Image); err != nil {
			return err
		}
	}
	if q.GPUs != "" && r.NoGPUs != "" {
		return &api.PolicyError{Rule: "gpus", Why: fmt.Sprintf("--gpus %s: this server has no GPUs to grant (%s); deploy without --gpus", q.GPUs, r.NoGPUs)}
	}
	home, _ := ops.HomeOf(id)
	for flag, dir := range map[string]string{"--data": q.Data, "--models": q.Models, "--workspace": q.Workspace} {
		if dir == "" {
			continue
		}
		real, err := asuser.UserDir(id.Cred(), dir, asuser.Read)
		if err != nil {
			return fmt.Errorf("%s %s: %w", flag, dir, err)
		}
		if home != "" && (real == home || strings.HasPrefix(real, filepath.Clean(home)+"/")) {
			continue
		}
		if _, ok := r.Policy.Containers.DataDir(real); !ok {
			return &api.PolicyError{Rule: "data-dirs", Why: fmt.Sprintf("%s %s (%s) is neither in your home nor a data directory the server's policy lists; use a directory of your home, or ask an administrator to list it", flag, dir, real)}
		}
	}
	return nil
}
