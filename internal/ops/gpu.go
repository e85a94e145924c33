package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/identity"
)

// DefaultLockDir holds root's GPU lock: the service and root's direct
// use allocate under the same one.
const DefaultLockDir = "/run/ds01"

// GPUConfig is how container deploy turns --gpus into an allocation.
type GPUConfig struct {
	// Inventory reads the server's GPUs (a gpu.Probe's Inventory).
	Inventory func(context.Context) (gpu.Inventory, error)
	// Limits are what each user may hold. They bind everyone but root
	// itself (root's --user included), who is held to free-ness alone.
	// The zero Limits grant nothing: a config that forgets them fails
	// closed.
	Limits gpu.Limits
	// LockDir holds the GPU lock (gpu.Lock); DefaultLockDir when "". It is
	// made when missing.
	LockDir string
	// ReleaseOnStop: only running containers hold their GPUs (the
	// policy's "until it stops"); otherwise until retired.
	ReleaseOnStop bool
}

// Unlimited are the limits of root's direct use: as many GPUs as are
// free, all included.
func Unlimited() gpu.Limits { return gpu.Limits{Default: gpu.Limit{Max: gpu.Unlimited, All: true}} }

// gpuGrant is how a deploy's --gpus is granted: nil to pass it to Docker
// as given (nothing configured, or no GPUs here, for root and the docker
// group, with a warning), else the grant to run right before the
// create. A user ds01 acts for as root (sudo, the service) is always
// allocated for, and refused where there is nothing to grant.
func (o *Ops) gpuGrant(ctx context.Context, id identity.Identity, gpus string, ev Events) (func(context.Context) (gpu.Allocation, func(), error), error) {
	if gpus == "" {
		return nil, nil
	}
	req, err := gpu.ParseRequest(gpus)
	if err != nil {
		return nil, err
	}
	bound := id.ActsForUser() && !id.Root
	cfg := o.GPU
	if cfg == nil {
		if bound {
			cfg = &GPUConfig{Inventory: gpu.Probe{}.Inventory}
		} else {
			ev.warn("--gpus %s was passed to Docker as it is; nothing was allocated (no GPU inventory configured), so other deploys may get the same GPUs", gpus)
			return nil, nil
		}
	}
	inv, err := cfg.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the GPUs for --gpus %s: %w", gpus, err)
	}
	if inv.NoGPUs != "" && len(inv.Grantable()) == 0 && !bound {
		ev.warn("--gpus %s was passed to Docker as it is; nothing was allocated (%s)", gpus, inv.NoGPUs)
		return nil, nil
	}
	ask := gpu.Ask{Inventory: inv, Request: req, User: gpuUser(id), Limits: cfg.Limits}
	if id.Root {
		ask.Limits = Unlimited()
	}
	return func(ctx context.Context) (gpu.Allocation, func(), error) {
		dir, err := cfg.lockDir()
		if err != nil {
			return gpu.Allocation{}, nil, err
		}
		return gpu.Reserve(ctx, dir, ask, o.holdings(cfg.ReleaseOnStop, ev))
	}, nil
}

// holdings reads who holds what from the containers' labels; a container
// whose labels do not decode is named in a warning, as its GPUs may be in
// use all the same.
func (o *Ops) holdings(releaseOnStop bool, ev Events) func(context.Context) ([]gpu.Holding, error) {
	return func(ctx context.Context) ([]gpu.Holding, error) {
		hs, bad, err := gpu.ReadHoldings(ctx, o.D, releaseOnStop)
		for _, b := range bad {
			ev.warn("GPUs unknown: %v (its GPUs count as free; ask an administrator to look)", b)
		}
		return hs, err
	}
}

// lockDir is the lock's directory, made (mode 0755, as its owner) when
// missing; gpu.Lock checks it is the caller's and writable by no one
// else.
func (c *GPUConfig) lockDir() (string, error) {
	dir := c.LockDir
	if dir == "" {
		dir = DefaultLockDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("the GPU lock directory: %w", err)
	}
	return dir, nil
}

// gpuUser is id as the limits know it: login, UID, and group names, the
// primary group's included.
func gpuUser(id identity.Identity) gpu.User {
	u := gpu.User{Login: id.Login, UID: id.UID}
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(id.GID), 10)); err == nil {
		u.Groups = append(u.Groups, g.Name)
	}
	for _, g := range id.Groups {
		u.Groups = append(u.Groups, g.Name)
	}
	return u
}

// GuardStart comes before a start of the container id (named name, with
// labels) that ds01 or the service's Docker proxy makes. Where GPUs are
// held only while a container runs (idle release), a stopped container's
// GPUs may have gone to someone else, and Docker would start it with them
// all the same: so, under the GPU lock, the devices its labels record
// must be held by no other container, or the start is refused
// (gpu.RuleStart). done releases the lock once the start has succeeded
// or failed, so that no deploy takes the GPUs in between. Without a GPU
// config or GPU labels there is nothing to check.
func (o *Ops) GuardStart(ctx context.Context, id, name string, labels map[string]string) (done func(), err error) {
	refs, err := gpu.DecodeLabels(labels)
	cfg := o.GPU
	if errors.Is(err, gpu.ErrNoLabels) || err == nil && len(refs) == 0 || cfg == nil {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	dir, err := cfg.lockDir()
	if err != nil {
		return nil, err
	}
	unlock, err := gpu.Lock(ctx, dir)
	if err != nil {
		return nil, err
	}
	hs, err := o.holdings(cfg.ReleaseOnStop, Events{})(ctx)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("reading who holds which GPU before starting %s: %w", name, err)
	}
	if taken := gpu.Taken(refs, id, hs); len(taken) > 0 {
		unlock()
		uid, _ := strconv.ParseUint(labels[label.UserID], 10, 32)
		return nil, gpu.StartRefusal(label.Unescape(labels[label.User]), uint32(uid), name, taken)
	}
	return unlock, nil
}
