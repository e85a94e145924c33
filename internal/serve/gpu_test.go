package serve

import (
	"context"
	"strings"
	"testing"

	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/serve/policy"
)

// The policy's limits are the allocator's: a login's own, else its
// groups' largest, else the default; --gpus all for all or none.
func TestGPULimits(t *testing.T) {
	p, err := policy.Parse([]byte("[gpus]\ndefault = 1\nallow_all = true\n[gpus.users]\nann = 0\n[gpus.groups]\nlab = 3\nvision = 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := GPULimits(p.GPUs)
	for _, tc := range []struct {
		u    gpu.User
		want gpu.Limit
		from string
	}{
		{gpu.User{Login: "ann", Groups: []string{"lab"}}, gpu.Limit{Max: 0, All: true}, "user ann"},
		{gpu.User{Login: "ben", Groups: []string{"vision", "lab"}}, gpu.Limit{Max: 3, All: true}, "group lab"},
		{gpu.User{Login: "cat"}, gpu.Limit{Max: 1, All: true}, "default"},
	} {
		got, from := l.For(tc.u)
		if got != tc.want || !strings.Contains(from, tc.from) {
			t.Errorf("%s: %+v (%s); want %+v (%s)", tc.u.Login, got, from, tc.want, tc.from)
		}
	}
}

// A policy without an inventory has no GPUs, and never runs nvidia-smi
// from root's PATH.
func TestNoInventory(t *testing.T) {
	p := policy.Default()
	p.GPUs.Inventory = ""
	inv, err := GPUConfig(p, "").Inventory(context.Background())
	if err != nil || !strings.Contains(inv.NoGPUs, "gpus.inventory") {
		t.Errorf("%+v %v", inv, err)
	}
	if r := rules(context.Background(), p, GPUConfig(p, "").Inventory); r.NoGPUs == "" {
		t.Error("the rules grant GPUs without an inventory")
	}
}
