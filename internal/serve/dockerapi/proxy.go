// Package dockerapi is the Docker API as a ds01 user may use it: a subset
// of the daemon's routes, proxied to the real socket, on the caller's own
// containers only. Ownership comes from the ds01.user_id label ds01 writes
// at create time, never from a name; lists are filtered to what the caller
// owns; every other route is refused in Docker's error shape with the
// rule and the ds01 command to use instead. Root's requests pass through.
package dockerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/ds01/ds01/internal/serve/audit"
	"github.com/ds01/ds01/internal/serve/peer"
)

// Recorder takes one audit entry per request.
type Recorder interface {
	Record(audit.Entry)
}

// Proxy serves the Docker API subset; the caller comes from the request
// context (peer.ConnContext).
type Proxy struct {
	upstream string // the daemon's unix socket
	rec      Recorder
	tr       *http.Transport
	guard    StartGuard // nil: starts are not checked
}

// New proxies to the daemon listening on the unix socket at upstream
// (/var/run/docker.sock) and records every decision in rec.
func New(upstream string, rec Recorder) *Proxy {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", upstream)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &Proxy{upstream: upstream, rec: rec, tr: tr}
}

// decision is what one request came to, for the audit log.
type decision struct {
	action, target, decision, rule string
}

// ServeHTTP checks the request against the caller's rights and, when
// allowed, hands it to the daemon.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	who, err := peer.FromContext(r.Context())
	var d decision
	if err != nil {
		d = refuse(w, decision{action: "docker", rule: RuleIdentity}, "the service knows callers only from the kernel, and this connection did not say: "+err.Error())
	} else {
		d = p.serve(w, r, who)
	}
	p.rec.Record(audit.Entry{
		Time: start, UID: who.UID, PID: who.PID, Login: who.Login,
		Action: d.action, Target: d.target, Decision: d.decision, Rule: d.rule,
		Duration: time.Since(start),
	})
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, who peer.Peer) decision {
	version, path := splitVersion(r.URL.Path)
	rt, target := match(r.Method, path)
	d := decision{action: "docker " + r.Method + " " + path, target: target}
	if rt != nil {
		d.action = rt.action
	}
	if who.Root() {
		d.rule = RuleRoot
		return p.forward(w, r, r.URL.Path, r.URL.RawQuery, true, d)
	}
	if oldAPI(version) {
		d.rule = RuleAPIVersion
		return refuse(w, d, fmt.Sprintf("Docker API %s is older than 1.24, whose start requests could carry their own HostConfig; use a current docker client", version))
	}
	if rt == nil {
		return refuseUnlisted(w, d, r.Method, path)
	}
	up := upstreamReq{r: r, version: version, who: who, route: rt, target: target}
	switch rt.kind {
	case refused:
		d.rule = rt.rule
		return refuse(w, d, rt.why)
	case open:
		d.rule = RuleOpen
		return p.forward(w, r, r.URL.Path, r.URL.RawQuery, false, d)
	case listContainers, listImages, events:
		return p.list(w, up, d)
	case execCreate:
		return p.execCreate(w, up, d)
	default:
		return p.owned(w, up, d)
	}
}

// refuseUnlisted is the default deny, naming the family's rule where
// there is one.
func refuseUnlisted(w http.ResponseWriter, d decision, method, path string) decision {
	for _, f := range prefixRefusals {
		if path == f.prefix || len(path) > len(f.prefix) && path[:len(f.prefix)+1] == f.prefix+"/" {
			d.action, d.rule = f.action, f.rule
			return refuse(w, d, f.why)
		}
	}
	d.rule = RuleAllowList
	return refuse(w, d, fmt.Sprintf("%s %s is not on ds01's allow-list of Docker API routes (ps, inspect, logs, exec, attach, start, stop, restart, top, stats, wait on your own containers); use the ds01 command for it (ds01 --help)", method, path))
}

// refuse answers in Docker's error shape, which the docker CLI prints as
// "Error response from daemon: MESSAGE".
func refuse(w http.ResponseWriter, d decision, why string) decision {
	d.decision = audit.Refuse
	msg := fmt.Sprintf("ds01 refused this by rule %q: %s", d.rule, why)
	writeError(w, http.StatusForbidden, msg)
	return d
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Message string `json:"message"`
	}{msg})
}
