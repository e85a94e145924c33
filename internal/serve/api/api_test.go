package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/engine/fake"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/audit"
	"github.com/ds01/ds01/internal/serve/peer"
)

type recorder struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (r *recorder) Record(e audit.Entry) {
	r.mu.Lock()
	r.entries = append(r.entries, e)
	r.mu.Unlock()
}

// serveAs runs a Server on a socket of its own, every connection seen as
// from p (standing in for SO_PEERCRED), on the fake engine.
func serveAs(t *testing.T, p peer.Peer, check Check) (*Client, *recorder) {
	t.Helper()
	d, err := engine.Detect(context.Background(), fake.New(engine.GraphDriver))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	s := &Server{Ops: &ops.Ops{D: deploy.New(d), CacheDir: t.TempDir()}, Audit: rec, Check: check,
		Lookup: func(string) (identity.Account, error) { return identity.Account{}, errors.New("no such account") }}
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ConnContext: func(ctx context.Context, _ net.Conn) context.Context { return peer.WithPeer(ctx, p) }}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return NewClient(sock, identity.Overrides{}, false), rec
}

var alice = peer.Peer{Cred: peer.Cred{UID: 20001, GID: 20001, PID: 42}, Login: "alice", Known: true}

// A call and its result cross the wire; the audit line names the caller
// the socket gave, not anything in the request.
func TestCallAndAudit(t *testing.T) {
	c, rec := serveAs(t, alice, nil)
	cs, err := c.ListContainers(context.Background(), identity.Identity{UID: 0, Login: "root"}, false)
	if err != nil || len(cs) != 0 {
		t.Fatalf("list: %v %v", cs, err)
	}
	if len(rec.entries) != 1 || rec.entries[0].UID != 20001 || rec.entries[0].PID != 42 || rec.entries[0].Decision != audit.Allow || rec.entries[0].Action != "ds01.container.list" {
		t.Errorf("audit: %+v", rec.entries)
	}
}

// Refusals come back with the exit code direct use gives and a rule in
// the audit log: root-only options and a forged identity exit 2, the
// policy's refusals 1.
func TestRefusalsCrossTheWire(t *testing.T) {
	policy := func(_ identity.Identity, op string, _ any) error {
		if op == "forbidden" {
			return &PolicyError{Rule: "bases", Why: "not listed"}
		}
		return nil
	}
	c, rec := serveAs(t, alice, policy)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		code int
		want string
		rule string
	}{
		{"every user's containers", func() error { _, err := c.ListContainers(ctx, identity.Identity{}, true); return err }, 2, "root only", "root-only"},
		{"a forged identity", func() error {
			f := *c
			f.As = identity.Overrides{Login: "root"}
			_, err := f.ListImages(ctx, identity.Identity{})
			return err
		}, 2, "for root itself only", "root-only"},
		{"the policy", func() error {
			_, err := c.CreateImage(ctx, identity.Identity{}, ops.ImageCreate{Project: "forbidden", BaseRef: "x"}, ops.Events{})
			return err
		}, 1, `rule "bases"`, "bases"},
		{"--pull with --offline", func() error {
			_, err := c.UpdateImage(ctx, identity.Identity{}, ops.ImageUpdate{Project: "p", Pull: true, Offline: true}, ops.Events{})
			return err
		}, 2, "--offline", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(rec.entries)
			err := tc.call()
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("err %v, want code %d and %q", err, tc.code, tc.want)
			}
			if got := rec.entries[n:]; len(got) != 1 || got[0].Rule != tc.rule || got[0].Decision == audit.Allow {
				t.Errorf("audit %+v, want one refusal by %q", got, tc.rule)
			}
		})
	}
}

// An account the host does not know gets nothing done for it.
func TestUnknownPeer(t *testing.T) {
	c, _ := serveAs(t, peer.Peer{Cred: peer.Cred{UID: 31337, GID: 31337}, Login: "ghost"}, nil)
	if _, err := c.ListImages(context.Background(), identity.Identity{}); err == nil || !strings.Contains(err.Error(), "no account on this host") {
		t.Errorf("an unknown UID: %v", err)
	}
}
