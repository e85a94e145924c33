package dockerapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ds01/ds01/assemble/label"
)

// list answers container and image lists and the event stream with only
// the caller's: the daemon is asked with the label filter added to the
// client's own (the daemon ANDs label filters), and lists are filtered
// once more on the way back, so a filter the daemon reads otherwise
// leaks nothing.
func (p *Proxy) list(w http.ResponseWriter, u upstreamReq, d decision) decision {
	d.rule = RuleOwnList
	q := u.r.URL.Query()
	f, err := ownFilter(q.Get("filters"), label.UserID+"="+u.uid())
	if err != nil {
		d.decision = "refuse"
		writeError(w, http.StatusBadRequest, "ds01: "+err.Error())
		return d
	}
	q.Set("filters", f)
	out := outbound{path: u.path(""), query: q.Encode()}
	if u.route.kind != events {
		uid := u.uid()
		out.transform = func(b []byte) ([]byte, error) { return ownItems(b, uid) }
	}
	return p.send(w, u.r, out, d)
}

// ownFilter is the client's filters (JSON, either of Docker's two forms)
// with the label kv added.
func ownFilter(raw, kv string) (string, error) {
	f := map[string]map[string]bool{}
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			var old map[string][]string
			if json.Unmarshal([]byte(raw), &old) != nil {
				return "", fmt.Errorf("invalid filters %q: %w", raw, err)
			}
			f = map[string]map[string]bool{}
			for k, vs := range old {
				f[k] = map[string]bool{}
				for _, v := range vs {
					f[k][v] = true
				}
			}
		}
	}
	if f["label"] == nil {
		f["label"] = map[string]bool{}
	}
	f["label"][kv] = true
	b, err := json.Marshal(f)
	return string(b), err
}

// ownItems keeps the items of a JSON list whose Labels say uid owns them.
func ownItems(b []byte, uid string) ([]byte, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("the daemon's list: %w", err)
	}
	kept := []json.RawMessage{}
	for _, it := range items {
		var o struct{ Labels map[string]string }
		if json.Unmarshal(it, &o) == nil && o.Labels[label.UserID] == uid {
			kept = append(kept, it)
		}
	}
	return json.Marshal(kept)
}
