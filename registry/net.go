package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ds01/ds01/internal/limits"
)

// ErrStalled is a registry that stopped answering, or answers too slowly
// to ever finish.
var ErrStalled = errors.New("the registry stopped sending")

// guarded bounds every request a pull makes: a redirect chain of at most
// limits.Redirects hops (go-containerregistry's client follows any
// number), an answer started within Headers, a body that delivers at
// least limits.StallBytes in every Window, and manifests of at most
// limits.Manifest bytes. Its errors are not temporary, so that
// go-containerregistry does not retry a registry that stalls.
type guarded struct {
	next    http.RoundTripper
	headers time.Duration
	window  time.Duration
}

// newTransport is the transport of every pull: t (a test's) or a clone of
// Go's default with connect and handshake deadlines, guarded.
func newTransport(t http.RoundTripper, stall time.Duration) http.RoundTripper {
	g := &guarded{next: baseTransport(t), headers: limits.Headers, window: limits.StallWindow}
	if stall > 0 {
		g.headers, g.window = stall, stall
	}
	return g
}

// baseTransport is t, or a clone of Go's default with connect and
// handshake deadlines.
func baseTransport(t http.RoundTripper) http.RoundTripper {
	if t != nil {
		return t
	}
	dt := http.DefaultTransport.(*http.Transport).Clone()
	dt.DialContext = (&net.Dialer{Timeout: limits.Connect, KeepAlive: 30 * time.Second}).DialContext
	dt.TLSHandshakeTimeout = limits.Connect
	return dt
}

func (g *guarded) RoundTrip(req *http.Request) (*http.Response, error) {
	if hops := redirects(req); hops > limits.Redirects {
		return nil, fmt.Errorf("%s: redirected %d times, more than ds01 follows (%d)", req.URL.Redacted(), hops, limits.Redirects)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(g.headers, func() {
		cancel(fmt.Errorf("%w: %s sent no answer within %s", ErrStalled, req.URL.Host, g.headers))
	})
	resp, err := g.next.RoundTrip(req.WithContext(ctx))
	timer.Stop()
	if err != nil {
		cause := context.Cause(ctx)
		cancel(nil)
		if errors.Is(cause, ErrStalled) {
			return nil, cause
		}
		return nil, err
	}
	var body io.Reader = resp.Body
	if strings.Contains(req.URL.Path, "/manifests/") {
		if resp.ContentLength > limits.Manifest.Max {
			resp.Body.Close()
			cancel(nil)
			return nil, limits.Manifest.Check(req.URL.Redacted(), resp.ContentLength)
		}
		body = limits.Reader(resp.Body, limits.Manifest.Max, func() error {
			return &limits.Error{Limit: limits.Manifest, Input: req.URL.Redacted(), Got: -1}
		})
	}
	w := &watched{r: body, c: resp.Body, ctx: ctx, cancel: cancel, window: g.window, host: req.URL.Host}
	w.timer = time.AfterFunc(g.window, w.check)
	resp.Body = w
	return resp, nil
}

// redirects counts the hops that led to req: the client sets Response on
// a request it makes to follow a redirect.
func redirects(req *http.Request) int {
	n := 0
	for r := req.Response; r != nil && r.Request != nil && n <= limits.Redirects; r = r.Request.Response {
		n++
	}
	return n
}

// watched is a body that must keep delivering: fewer than StallBytes in a
// window cancels its request.
type watched struct {
	r      io.Reader
	c      io.Closer
	ctx    context.Context
	cancel context.CancelCauseFunc
	window time.Duration
	host   string
	timer  *time.Timer

	mu     sync.Mutex
	recent int64
	done   bool
}

func (w *watched) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if w.recent < limits.StallBytes {
		w.cancel(fmt.Errorf("%w: %s sent %d bytes in %s, fewer than the %d ds01 waits for", ErrStalled, w.host, w.recent, w.window, limits.StallBytes))
		return
	}
	w.recent = 0
	w.timer.Reset(w.window)
}

func (w *watched) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.mu.Lock()
	w.recent += int64(n)
	if err != nil {
		w.done = true
	}
	w.mu.Unlock()
	if err != nil && err != io.EOF {
		if cause := context.Cause(w.ctx); errors.Is(cause, ErrStalled) {
			return n, cause
		}
	}
	return n, err
}

func (w *watched) Close() error {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	w.timer.Stop()
	err := w.c.Close()
	w.cancel(nil)
	return err
}
