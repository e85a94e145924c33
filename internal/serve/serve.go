// Package serve is ds01 serve: one root service on a unix socket that
// every user may connect to, who they are known from the kernel alone.
// Under /ds01/v1/ it runs ds01's operations for the caller, within the
// administrator's policy; everything else on the socket is the
// Docker-compatible subset for the caller's own containers. Every request
// leaves one line in the audit log. All state lives in Docker and on
// disk: a restart loses nothing.
package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/api"
	"github.com/ds01/ds01/internal/serve/audit"
	"github.com/ds01/ds01/internal/serve/dockerapi"
	"github.com/ds01/ds01/internal/serve/peer"
	"github.com/ds01/ds01/internal/serve/policy"
	"github.com/ds01/ds01/registry"
)

// Config is how the service is run.
type Config struct {
	// Socket is where it listens, unless systemd handed it a socket.
	Socket string
	// Policy is the administrator's policy.
	Policy policy.Policy
	// DockerSocket is the engine's socket the service alone may open.
	DockerSocket string
	// Audit, when set, overrides the policy's audit log (tests).
	Audit *audit.Log
	// Ready, when set, is told the socket's path once it listens.
	Ready func(path string)
	// GPULockDir, when set, holds the GPU lock instead of
	// ops.DefaultLockDir (tests).
	GPULockDir string
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config, o *ops.Ops) error {
	if os.Geteuid() != 0 {
		return errors.New("ds01 serve acts for every user and must run as root (systemd starts it so: see packaging/ds01.service)")
	}
	l, activated, err := peer.FromSystemd()
	if err != nil {
		return err
	}
	if !activated {
		if l, err = peer.Listen(cfg.Socket); err != nil {
			return err
		}
	}
	log := cfg.Audit
	if log == nil {
		if log, err = audit.Open(cfg.Policy.AuditLog); err != nil {
			return fmt.Errorf("the policy's audit log: %w", err)
		}
	}
	defer log.Close()
	o.Slice = func(id identity.Identity) (string, error) {
		return cfg.Policy.Containers.Parent(id.UID, id.GID, id.Name)
	}
	o.Limits = func(id identity.Identity) deploy.Limits {
		r := cfg.Policy.Limits.For(id.Login)
		return deploy.Limits{Memory: int64(r.Memory), NanoCPUs: int64(r.CPUs * 1e9), PIDs: r.PIDs}
	}
	o.GPU = GPUConfig(cfg.Policy, cfg.GPULockDir)
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	r := rules(pctx, cfg.Policy, o.GPU.Inventory)
	cancel()
	mux := http.NewServeMux()
	mux.Handle(api.Prefix, &api.Server{Ops: o, Audit: log, Check: r.Check, Lookup: identity.Host})
	mux.Handle("/", dockerapi.New(cfg.DockerSocket, log).WithStartGuard(o))
	// No write timeout: logs -f, events, attach and builds stream.
	srv := &http.Server{Handler: mux, ConnContext: peer.ConnContext, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	if cfg.Ready != nil {
		cfg.Ready(l.Addr().String())
	}
	if after := time.Duration(cfg.Policy.IdleRelease); after > 0 {
		every, err := idleInterval()
		if err != nil {
			srv.Close()
			return err
		}
		go idleLoop(ctx, o, log, after, every)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// rules are the policy's checks, with what the machine has: the
// inventory is read once here, and a machine without the NVIDIA stack
// refuses --gpus before anything runs. A misbehaving inventory is left
// for each deploy to report.
func rules(ctx context.Context, p policy.Policy, inventory func(context.Context) (gpu.Inventory, error)) Rules {
	r := Rules{Policy: p, Catalog: registry.BuiltinCatalog()}
	if inv, err := inventory(ctx); err == nil && inv.NoGPUs != "" && len(inv.Grantable()) == 0 {
		r.NoGPUs = inv.NoGPUs
	}
	return r
}
