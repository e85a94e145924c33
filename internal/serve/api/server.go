package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/audit"
	"github.com/ds01/ds01/internal/serve/peer"
	"github.com/ds01/ds01/registry"
)

// Recorder takes one audit line per request.
type Recorder interface{ Record(audit.Entry) }

// Check is the policy's word on a request before it runs: nil, or an
// error naming the rule.
type Check func(id identity.Identity, op string, req any) error

// Server answers ds01's API with the operations, for the caller the
// kernel names.
type Server struct {
	Ops   *ops.Ops
	Audit Recorder
	// Check, when set, is asked before every operation.
	Check Check
	// Lookup finds root's --user accounts (identity.Host).
	Lookup identity.Lookup
}

// maxCall caps a request body: requests are flags, a requirements file
// at most.
const maxCall = 4 << 20

// ServeHTTP runs the operation the path names.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	op := strings.TrimPrefix(r.URL.Path, Prefix)
	p, err := peer.FromContext(r.Context())
	entry := audit.Entry{Time: start, UID: p.UID, PID: p.PID, Login: p.Login, Action: "ds01." + strings.ReplaceAll(op, "/", ".")}
	if err != nil {
		http.Error(w, "ds01 refused this by rule \"kernel-identity\": the caller is not known from the socket", http.StatusForbidden)
		return
	}
	run, ok := operations[op]
	if r.Method != http.MethodPost || !ok {
		entry.Decision, entry.Rule = audit.Refuse, "allow-list"
		s.record(entry, start)
		http.Error(w, fmt.Sprintf("ds01 refused this by rule \"allow-list\": no ds01 operation %s %q", r.Method, op), http.StatusNotFound)
		return
	}
	var c call
	if err := json.NewDecoder(io.LimitReader(r.Body, maxCall)).Decode(&c); err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	st := newStream(w)
	target, result, err := s.run(r.Context(), p, c, run, st)
	entry.Target = target
	entry.Decision = audit.Allow
	if err != nil {
		entry.Decision, entry.Rule = audit.Error, ruleOf(err)
		if entry.Rule != "" {
			entry.Decision = audit.Refuse
		}
	}
	// Audited before the caller hears the answer.
	s.record(entry, start)
	if err != nil {
		st.send(message{Error: &Error{Message: err.Error(), Code: exitCode(err)}})
		return
	}
	st.send(message{Result: result})
}

func (s *Server) record(e audit.Entry, start time.Time) {
	if s.Audit != nil {
		e.Duration = time.Since(start)
		s.Audit.Record(e)
	}
}

// run resolves whom the call acts for (the peer; root's overrides only
// from root: a forged identity is refused here) and runs it.
func (s *Server) run(ctx context.Context, p peer.Peer, c call, run operation, st *stream) (string, []byte, error) {
	id, err := identity.Resolve(identity.Process{UID: p.UID, GID: p.GID, Login: p.Login}, c.As, s.Lookup)
	if err != nil {
		return "", nil, err
	}
	if !p.Known && !id.Root {
		return "", nil, fmt.Errorf("UID %d has no account on this host: ds01 acts only for users the host knows", p.UID)
	}
	ev := st.events(c.Verbose)
	return run(ctx, s, id, c.Request, ev, st)
}

// ErrPolicy marks a refusal by the administrator's policy.
var ErrPolicy = errors.New("refused by the policy")

// ruleOf names the rule a refusal was made by, for the audit log.
func ruleOf(err error) string {
	var pe *PolicyError
	var gr *gpu.Refusal
	switch {
	case errors.As(err, &pe):
		return pe.Rule
	case errors.As(err, &gr):
		return gr.Rule
	case errors.Is(err, ops.ErrRootOnly), errors.Is(err, identity.ErrNotRoot):
		return "root-only"
	}
	return ""
}

// PolicyError is a request the policy refuses, by the rule named.
type PolicyError struct {
	Rule, Why string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("ds01 refused this by rule %q of the server's policy: %s", e.Rule, e.Why)
}

func (e *PolicyError) Unwrap() error { return ErrPolicy }

// exitCode is the CLI's: 2 for a request that could never be granted as
// asked (root-only options, contradicting flags), 1 for the rest.
func exitCode(err error) int {
	if errors.Is(err, ops.ErrRootOnly) || errors.Is(err, identity.ErrNotRoot) || errors.Is(err, ops.ErrPullOffline) {
		return 2
	}
	return 1
}

// stream writes JSON lines, flushed at once: the client shows progress as
// it comes.
type stream struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	enc *json.Encoder
	// Progress is sent a few times a second, what came between added up.
	lastProgress time.Time
	pending      int64
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &stream{w: w, enc: json.NewEncoder(w)}
}

func (s *stream) send(m message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enc.Encode(m)
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

// lineWriter sends what is written as one kind of message.
type lineWriter func(string)

func (f lineWriter) Write(p []byte) (int, error) { f(string(p)); return len(p), nil }

func (s *stream) events(verbose bool) ops.Events {
	ev := ops.Events{
		PackageOutput: lineWriter(func(t string) { s.send(message{Out: t}) }),
		Waiting:       func(p string) { s.send(message{Waiting: p}) },
		Warn:          func(w string) { s.send(message{Warn: w}) },
		LoadProgress:  s.progress,
	}
	if verbose {
		ev.Log = lineWriter(func(t string) { s.send(message{Log: t}) })
	}
	return ev
}

func (s *stream) pullEvents(e registry.PullEvent) { s.send(message{Pull: &e}) }

func (s *stream) progress(total, n int64) {
	s.mu.Lock()
	s.pending += n
	n, due := s.pending, n == 0 || time.Since(s.lastProgress) >= 100*time.Millisecond
	if due {
		s.pending, s.lastProgress = 0, time.Now()
	}
	s.mu.Unlock()
	if due {
		s.send(message{Progress: &[2]int64{total, n}})
	}
}
