package dockerapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/serve/audit"
)

// StartGuard is asked before a user's start or restart of their own
// container reaches the daemon: a stopped container's GPUs may have gone
// to someone else (idle release), and Docker would start it with them all
// the same. The service wires ds01's check (ops.GuardStart); the proxy
// does not know about allocation.
type StartGuard interface {
	// GuardStart refuses (a *gpu.Refusal) or returns done, called once
	// the daemon has answered.
	GuardStart(ctx context.Context, id, name string, labels map[string]string) (done func(), err error)
}

// WithStartGuard has p ask g before every start and restart.
func (p *Proxy) WithStartGuard(g StartGuard) *Proxy {
	p.guard = g
	return p
}

// startsContainer says whether a route starts a container.
func startsContainer(rt *route) bool {
	return rt.method == http.MethodPost && (strings.HasSuffix(rt.pattern, "/containers/{id}/start") || strings.HasSuffix(rt.pattern, "/containers/{id}/restart"))
}

// guardStart runs the guard for a start of o; ok false is a refusal or a
// failure already written.
func (p *Proxy) guardStart(w http.ResponseWriter, u upstreamReq, o object, d *decision) (done func(), ok bool) {
	if p.guard == nil || !startsContainer(u.route) {
		return func() {}, true
	}
	done, err := p.guard.GuardStart(u.r.Context(), o.ID, strings.TrimPrefix(o.Name, "/"), o.Config.Labels)
	var r *gpu.Refusal
	switch {
	case errors.As(err, &r):
		d.rule = r.Rule
		*d = refuse(w, *d, strings.TrimPrefix(err.Error(), r.Rule+": "))
		return nil, false
	case err != nil:
		d.decision = audit.Error
		writeError(w, http.StatusInternalServerError, "ds01: checking the container's GPUs before the start: "+err.Error())
		return nil, false
	}
	return done, true
}
