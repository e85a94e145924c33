package serve

import (
	"context"
	"time"

	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/policy"
)

// GPUConfig is how deploys allocate GPUs under the policy: its inventory
// command, its limits per login, per group and by default (--gpus all
// for everyone or no one), and the GPU lock in lockDir (ops'
// DefaultLockDir when ""). With idle release on, GPUs are held only
// while a container has not stopped. Direct use through sudo takes the
// same.
func GPUConfig(p policy.Policy, lockDir string) *ops.GPUConfig {
	inventory := gpu.Probe{Command: p.GPUs.Inventory}.Inventory
	if p.GPUs.Inventory == "" {
		// Never nvidia-smi from root's PATH.
		inventory = func(context.Context) (gpu.Inventory, error) {
			return gpu.Inventory{NoGPUs: "the policy names no GPU inventory (gpus.inventory)"}, nil
		}
	}
	return &ops.GPUConfig{
		Inventory: inventory,
		Limits:    GPULimits(p.GPUs),
		LockDir:   lockDir,
		// Idle release frees a stopped container's GPUs: that needs no
		// record beyond Docker's own state, which survives a restart of
		// the service and of the host alike.
		ReleaseOnStop: p.IdleRelease > 0,
	}
}

// GPULimits are the policy's GPU limits as the allocator takes them.
func GPULimits(g policy.GPUs) gpu.Limits {
	lim := func(n int) gpu.Limit { return gpu.Limit{Max: n, All: g.AllowAll} }
	l := gpu.Limits{Default: lim(g.Default), Users: map[string]gpu.Limit{}, Groups: map[string]gpu.Limit{}}
	for login, n := range g.Users {
		l.Users[login] = lim(n)
	}
	for group, n := range g.Groups {
		l.Groups[group] = lim(n)
	}
	return l
}

// probeTimeout bounds the inventory read at start, which decides whether
// the service grants GPUs at all.
const probeTimeout = 30 * time.Second
