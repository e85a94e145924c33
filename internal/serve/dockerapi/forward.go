package dockerapi

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/ds01/ds01/internal/serve/audit"
)

// outbound is the request the daemon gets: built by the proxy from what
// it checked, never the client's path.
type outbound struct {
	path, query string
	body        io.Reader // nil: none
	length      int64     // of body; -1 unknown
	// transform rewrites a whole (bounded) response body, for lists.
	transform func([]byte) ([]byte, error)
}

// maxList bounds a list response the proxy reads whole to filter.
const maxList = 64 << 20

// forward sends r on with the given path and query, and its body only
// when withBody.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, path, query string, withBody bool, d decision) decision {
	out := outbound{path: path, query: query}
	if withBody {
		out.body, out.length = r.Body, r.ContentLength
	}
	return p.send(w, r, out, d)
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (p *Proxy) send(w http.ResponseWriter, r *http.Request, out outbound, d decision) decision {
	u := "http://docker" + out.path
	if out.query != "" {
		u += "?" + out.query
	}
	body := out.body
	if body == nil {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u, body)
	if err != nil {
		return failed(w, d, err)
	}
	req.ContentLength = out.length
	if out.body == nil {
		req.ContentLength = 0
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	upgrade := r.Header.Get("Upgrade")
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	if upgrade != "" {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", upgrade)
		return p.hijack(w, req, d)
	}
	resp, err := p.tr.RoundTrip(req)
	if err != nil {
		return failed(w, d, err)
	}
	defer resp.Body.Close()
	return respond(w, resp, out.transform, d)
}

// failed is a request the service allowed but could not hand on.
func failed(w http.ResponseWriter, d decision, err error) decision {
	d.decision = audit.Error
	writeError(w, http.StatusBadGateway, "ds01: the Docker daemon could not be reached: "+err.Error())
	return d
}

// respond copies the daemon's answer, flushing as it streams (logs -f,
// stats, events, wait).
func respond(w http.ResponseWriter, resp *http.Response, transform func([]byte) ([]byte, error), d decision) decision {
	d.decision = audit.Allow
	copyHeader(w.Header(), resp.Header)
	if transform != nil && resp.StatusCode == http.StatusOK {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxList+1))
		if err == nil && len(b) > maxList {
			err = fmt.Errorf("the list is over %d bytes", maxList)
		}
		if err == nil {
			b, err = transform(b)
		}
		if err != nil {
			w.Header().Del("Content-Length")
			return failed(w, d, err)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
		return d
	}
	w.WriteHeader(resp.StatusCode)
	// The headers go at once: a client may wait for them before it goes
	// on (the CLI's attach waits for its wait request to be taken).
	http.NewResponseController(w).Flush()
	copyFlush(w, resp.Body)
	return d
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = vs
	}
	for _, h := range hopHeaders {
		dst.Del(h)
	}
}

func copyFlush(w http.ResponseWriter, r io.Reader) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

type closeWriter interface{ CloseWrite() error }

// hijack carries an upgraded connection (attach, exec start): the
// request goes to the daemon on a connection of its own; on 101 both
// connections are joined, each direction half-closed when its side is
// done (stdin's end reaches the process, the output runs to its end).
func (p *Proxy) hijack(w http.ResponseWriter, req *http.Request, d decision) decision {
	dc, err := net.Dial("unix", p.upstream)
	if err != nil {
		return failed(w, d, err)
	}
	defer dc.Close()
	if err := req.Write(dc); err != nil {
		return failed(w, d, err)
	}
	br := bufio.NewReader(dc)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return failed(w, d, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return respond(w, resp, nil, d)
	}
	cc, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return failed(w, d, err)
	}
	defer cc.Close()
	d.decision = audit.Allow
	var head bytes.Buffer
	fmt.Fprintf(&head, "HTTP/1.1 101 %s\r\n", strings.TrimSpace(strings.TrimPrefix(resp.Status, "101")))
	resp.Header.Write(&head)
	head.WriteString("\r\n")
	if _, err := cc.Write(head.Bytes()); err != nil {
		return d
	}
	go func() {
		io.Copy(dc, io.MultiReader(io.LimitReader(cbuf.Reader, int64(cbuf.Reader.Buffered())), cc))
		if c, ok := dc.(closeWriter); ok {
			c.CloseWrite()
		}
	}()
	io.Copy(cc, br)
	if c, ok := cc.(closeWriter); ok {
		c.CloseWrite()
	}
	return d
}
