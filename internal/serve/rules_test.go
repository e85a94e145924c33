package serve

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/api"
	"github.com/ds01/ds01/internal/serve/policy"
	"github.com/ds01/ds01/registry"
)

// The policy's rules on requests, as a user (not root: root is never
// asked).
func TestRules(t *testing.T) {
	data := t.TempDir()
	pol := policy.Default()
	pol.Bases.Refs = []string{"docker.io/library/debian:bookworm"}
	pol.Bases.Registries = []string{"registry.lab:5000"}
	pol.Containers.DataDirs = []string{data}
	r := Rules{Policy: pol, Catalog: []registry.CatalogEntry{{Image: "aimehub/pytorch:2.5"}}, NoGPUs: "no nvidia-smi"}
	// The test's own user, so that its directories can be read as it.
	id := identity.Identity{Login: "alice", UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	sub := filepath.Join(data, "set")
	os.Mkdir(sub, 0o755)
	for _, tc := range []struct {
		name string
		req  any
		rule string
	}{
		{"a listed ref", ops.ImageCreate{BaseRef: "debian:bookworm"}, ""},
		{"a listed registry", ops.ImageCreate{BaseRef: "registry.lab:5000/x/y:1"}, ""},
		{"the catalog, by the server's catalog", ops.ImageCreate{BaseRef: "aimehub/pytorch:2.5"}, ""},
		{"a catalog the request made up", ops.ImageCreate{BaseRef: "evil/x:1", Catalog: map[string]string{"image": "evil/x:1"}}, "bases"},
		{"the user's own image", ops.ImageCreate{BaseRef: "ds01-" + strconv.FormatUint(uint64(id.UID), 10) + "/p:latest"}, ""},
		{"another user's image", ops.ImageCreate{BaseRef: "ds01-1/p:latest"}, "bases"},
		{"GPU variables", ops.ImageCreate{BaseRef: "debian:bookworm", Env: []string{"A=1", "CUDA_VISIBLE_DEVICES=0,1"}}, "gpu-env"},
		{"GPUs on a machine without", ops.ContainerDeploy{Name: "x", GPUs: "1"}, "gpus"},
		{"a listed data directory", ops.ContainerDeploy{Name: "x", Data: sub}, ""},
		{"an unlisted one", ops.ContainerDeploy{Name: "x", Data: "/usr"}, "data-dirs"},
		{"a deploy from an unlisted image", ops.ContainerDeploy{Name: "x", Image: "busybox"}, "bases"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Check(id, "", tc.req)
			var pe *api.PolicyError
			switch {
			case tc.rule == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.rule != "" && (!errors.As(err, &pe) || pe.Rule != tc.rule || !strings.Contains(err.Error(), `rule "`+tc.rule+`"`)):
				t.Errorf("err %v, want rule %s", err, tc.rule)
			}
		})
	}
}
