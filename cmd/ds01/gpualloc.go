package main

import (
	"os"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve"
)

// lockDirEnv moves root's GPU lock from /run/ds01 (tests); only root
// itself, or the service root starts, takes it.
const lockDirEnv = "DS01_GPU_LOCK_DIR"

// directGPU is how a deploy in this process allocates GPUs. Root itself
// (--user included) is held to free-ness alone, DS01_GPU_INVENTORY
// standing in for nvidia-smi. A user through sudo gets the service's
// rules: the policy (DefaultPolicy when it exists, else the built-in
// one), its inventory and root's lock, nothing taken from the
// environment. A member of the docker group is held to free-ness, its
// lock in its own cache: it excludes that user's own concurrent deploys
// only, as root's lock is not the group's to take (the docker group can
// do as it likes with Docker anyway).
func directGPU(cmd *cli.Command, id identity.Identity, cacheDir string) (*ops.GPUConfig, error) {
	inv := gpu.Probe{Command: os.Getenv("DS01_GPU_INVENTORY")}.Inventory
	switch {
	case os.Geteuid() != 0:
		return &ops.GPUConfig{Inventory: inv, Limits: ops.Unlimited(), LockDir: cacheDir}, nil
	case id.Root:
		return &ops.GPUConfig{Inventory: inv, Limits: ops.Unlimited(), LockDir: os.Getenv(lockDirEnv)}, nil
	case os.Getenv("DS01_GPU_INVENTORY") != "":
		return nil, usagef("DS01_GPU_INVENTORY is not taken through sudo: it would run a command of %s's choosing as root", id.Login)
	}
	pol, err := loadPolicy(cmd)
	if err != nil {
		return nil, err
	}
	return serve.GPUConfig(pol, ""), nil
}
