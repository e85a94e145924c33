package dockerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/internal/serve/audit"
	"github.com/ds01/ds01/internal/serve/peer"
)

// upstreamReq is a checked request on its way to the daemon.
type upstreamReq struct {
	r       *http.Request
	version string
	who     peer.Peer
	route   *route
	target  string
}

// path is the route's pattern with its variable replaced by id (a
// checked full ID), under the client's API version.
func (u upstreamReq) path(id string) string {
	p := strings.NewReplacer("{id}", id, "{name}", id).Replace(u.route.pattern)
	if u.version != "" {
		p = "/v" + u.version + p
	}
	return p
}

func (u upstreamReq) uid() string { return strconv.FormatUint(uint64(u.who.UID), 10) }

// object is what an inspect says about ownership.
type object struct {
	ID     string `json:"Id"`
	Name   string // a container's, /NAME
	Config struct {
		Labels map[string]string
		User   string
	}
	ContainerID string // of an exec
}

// daemonError is a non-200 answer to an inspect, passed on as it is (the
// CLI needs its 404 to say "No such container").
type daemonError struct {
	status int
	body   []byte
}

func (e *daemonError) Error() string { return fmt.Sprintf("daemon answered %d: %s", e.status, e.body) }

// inspect asks the daemon about the object at path (…/json).
func (p *Proxy) inspect(ctx context.Context, path string) (object, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return object{}, err
	}
	resp, err := p.tr.RoundTrip(req)
	if err != nil {
		return object{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxList))
	if err != nil {
		return object{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return object{}, &daemonError{resp.StatusCode, b}
	}
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		return object{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	return o, nil
}

// checkErr answers a failed ownership check.
func checkErr(w http.ResponseWriter, d decision, err error) decision {
	if de, ok := err.(*daemonError); ok {
		d.decision = audit.Error
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(de.status)
		w.Write(de.body)
		return d
	}
	return failed(w, d, err)
}

// ownedContainer is the caller's container named by target, or a refusal
// already written.
func (p *Proxy) ownedContainer(w http.ResponseWriter, u upstreamReq, d *decision) (object, bool) {
	d.rule = RuleOwnContainers
	o, err := p.inspect(u.r.Context(), "/containers/"+url.PathEscape(u.target)+"/json")
	if err != nil {
		*d = checkErr(w, *d, err)
		return object{}, false
	}
	if o.Config.Labels[label.UserID] != u.uid() {
		*d = refuse(w, *d, fmt.Sprintf("container %s is not yours: through this socket you act only on containers ds01 made for you (label %s=%d); \"docker ps\" lists them, \"ds01 container deploy NAME\" makes one", u.target, label.UserID, u.who.UID))
		return object{}, false
	}
	return o, true
}

// owned handles the routes on one of the caller's containers, execs or
// images: the daemon is asked by the full ID that was checked, so a name
// moved to another container in between reaches nothing else.
func (p *Proxy) owned(w http.ResponseWriter, u upstreamReq, d decision) decision {
	var id string
	switch u.route.kind {
	case ownContainer:
		o, ok := p.ownedContainer(w, u, &d)
		if !ok {
			return d
		}
		done, ok := p.guardStart(w, u, o, &d)
		if !ok {
			return d
		}
		defer done()
		id = o.ID
	case ownExec:
		ex, err := p.inspect(u.r.Context(), "/exec/"+url.PathEscape(u.target)+"/json")
		if err != nil {
			d.rule = RuleOwnContainers
			return checkErr(w, d, err)
		}
		cu := u
		cu.target = ex.ContainerID
		if _, ok := p.ownedContainer(w, cu, &d); !ok {
			return d
		}
		id = ex.ID
	case ownImage:
		o, ok := p.ownedImage(w, u, &d)
		if !ok {
			return d
		}
		id = o.ID
	}
	out := outbound{path: u.path(id), query: u.r.URL.RawQuery}
	if u.route.body {
		if err := body(u, &out); err != nil {
			d.rule = RuleBody
			return refuse(w, d, err.Error())
		}
	}
	return p.send(w, u.r, out, d)
}

func (p *Proxy) ownedImage(w http.ResponseWriter, u upstreamReq, d *decision) (object, bool) {
	d.rule = RuleOwnImages
	o, err := p.inspect(u.r.Context(), "/images/"+u.target+"/json")
	if err != nil {
		*d = checkErr(w, *d, err)
		return object{}, false
	}
	if o.Config.Labels[label.UserID] != u.uid() {
		*d = refuse(w, *d, fmt.Sprintf("image %s is not yours: through this socket you see only images ds01 made for you (label %s=%d); \"ds01 image list\" lists them", u.target, label.UserID, u.who.UID))
		return object{}, false
	}
	return o, true
}

// maxBody bounds the JSON bodies the proxy decodes.
const maxBody = 1 << 20

// body is what of the client's body reaches the daemon: an exec start,
// decoded and written again, so the daemon acts on exactly what was read
// (no other allowed route of a user takes a body).
func body(u upstreamReq, out *outbound) error {
	var s container.ExecStartRequest
	if err := decodeBody(u.r, &s); err != nil {
		return err
	}
	return encodeBody(out, s)
}

func decodeBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("reading the request body: %w", err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("the request body is over %d bytes", maxBody)
	}
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("the request body is not the JSON Docker expects: %w", err)
	}
	return nil
}

func encodeBody(out *outbound, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	out.body, out.length = strings.NewReader(string(b)), int64(len(b))
	return nil
}
