package dockerapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		method, path string
		action       string // "" when no route matches
		target       string
	}{
		{"GET", "/_ping", "docker.ping", ""},
		{"HEAD", "/_ping", "docker.ping", ""},
		{"GET", "/containers/json", "docker.container.list", ""},
		{"GET", "/containers/abc/json", "docker.container.inspect", "abc"},
		{"GET", "/containers/abc/attach/ws", "docker.container.attach", "abc"},
		{"POST", "/containers/abc/exec", "docker.container.exec", "abc"},
		{"POST", "/exec/0123/start", "docker.exec.start", "0123"},
		{"DELETE", "/containers/abc", "docker.container.remove", "abc"},
		{"GET", "/images/json", "docker.image.list", ""},
		{"GET", "/images/ds01-1000/proj:latest/json", "docker.image.inspect", "ds01-1000/proj:latest"},
		{"DELETE", "/images/ds01-1000/proj:latest", "docker.image.remove", "ds01-1000/proj:latest"},
		{"POST", "/containers/create", "docker.container.create", ""},
		{"GET", "/containers/a/b/json", "", ""}, // a container name has no slash
		{"GET", "/containers/../json", "", ""},
		{"GET", "/containers//json", "", ""},
		{"POST", "/containers/abc/json", "", ""}, // wrong method
		{"GET", "/volumes", "", ""},
	}
	for _, tt := range tests {
		r, target := match(tt.method, tt.path)
		action := ""
		if r != nil {
			action = r.action
		}
		if action != tt.action || target != tt.target {
			t.Errorf("match(%s %s) = %q %q, want %q %q", tt.method, tt.path, action, target, tt.action, tt.target)
		}
	}
}

func TestSplitVersion(t *testing.T) {
	for _, tt := range []struct{ in, version, rest string }{
		{"/v1.41/containers/json", "1.41", "/containers/json"},
		{"/containers/json", "", "/containers/json"},
		{"/v1.41", "", "/v1.41"},
		{"/version", "", "/version"},
		{"/vx/containers/json", "", "/vx/containers/json"},
	} {
		v, rest := splitVersion(tt.in)
		if v != tt.version || rest != tt.rest {
			t.Errorf("splitVersion(%s) = %q %q", tt.in, v, rest)
		}
	}
	for v, old := range map[string]bool{"1.41": false, "1.24": false, "1.23": true, "1.12": true, "2.0": false, "1": true, "": false, "1.x": true} {
		if oldAPI(v) != old {
			t.Errorf("oldAPI(%q) = %v", v, !old)
		}
	}
}

func TestExecUser(t *testing.T) {
	for _, tt := range []struct {
		asked, ctr, want string
		ok               bool
	}{
		{"", "1000:1000", "1000:1000", true},
		{"1000", "1000:1000", "1000", true},
		{"1000:1000", "1000", "1000:1000", true},
		{"0", "1000:1000", "", false},
		{"root", "1000:1000", "", false},
		{"0:0", "1000:1000", "", false},
		{"1001", "1000:1000", "", false},
		{"h-baker", "1000:1000", "", false},
		{"", "", "", false}, // a container running as root
		{"", "0:0", "", false},
		{"", "00", "", false},
	} {
		got, err := execUser(tt.asked, tt.ctr, 1000, 1000)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("execUser(%q, container %q) = %q, %v", tt.asked, tt.ctr, got, err)
		}
	}
}

func TestOwnFilter(t *testing.T) {
	for _, in := range []string{"", `{"status":{"running":true}}`, `{"status":["running"]}`, `{"label":{"ds01.user_id=2":true}}`} {
		out, err := ownFilter(in, "ds01.user_id=1")
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var f map[string]map[string]bool
		json.Unmarshal([]byte(out), &f)
		if !f["label"]["ds01.user_id=1"] {
			t.Errorf("%s → %s lacks the caller's label", in, out)
		}
		if strings.Contains(in, "running") && !f["status"]["running"] {
			t.Errorf("%s → %s lost the client's filter", in, out)
		}
	}
	if _, err := ownFilter(`{"label":`, "x"); err == nil {
		t.Error("broken filters accepted")
	}
	out, _ := ownItems([]byte(`[{"Id":"a","Labels":{"ds01.user_id":"1"}},{"Id":"b","Labels":{"ds01.user_id":"2"}},{"Id":"c"}]`), "1")
	if string(out) != `[{"Id":"a","Labels":{"ds01.user_id":"1"}}]` {
		t.Errorf("ownItems kept %s", out)
	}
}

// What the daemon is asked is what was checked: a matched path rebuilt
// from its pattern and the checked variable is the path itself.
func FuzzMatch(f *testing.F) {
	for _, r := range routes {
		f.Add(r.method, "/v1.41"+strings.NewReplacer("{id}", "abc", "{name}", "a/b:c").Replace(r.pattern))
	}
	f.Add("GET", "/containers/%2e%2e/json")
	f.Fuzz(func(t *testing.T, method, path string) {
		version, rest := splitVersion(path)
		if version != "" && "/v"+version+rest != path {
			t.Fatalf("splitVersion(%q) = %q %q", path, version, rest)
		}
		r, v := match(method, rest)
		if r == nil {
			return
		}
		u := upstreamReq{route: r}
		if got := u.path(v); got != rest {
			t.Fatalf("%s %s matched %s with %q, rebuilt as %s", method, rest, r.pattern, v, got)
		}
		if strings.Contains(r.pattern, "{id}") && strings.Contains(v, "/") {
			t.Fatalf("container or exec %q has a slash", v)
		}
	})
}

// The caller's label is always in the filters sent, and whatever the
// client filtered on stays.
func FuzzOwnFilter(f *testing.F) {
	f.Add(`{"status":{"running":true}}`)
	f.Add(`{"label":["a=b"]}`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ownFilter(in, "ds01.user_id=1")
		if err != nil {
			return
		}
		var f map[string]map[string]bool
		if err := json.Unmarshal([]byte(out), &f); err != nil {
			t.Fatalf("%q → %q: %v", in, out, err)
		}
		if !f["label"]["ds01.user_id=1"] {
			t.Fatalf("%q → %q lacks the caller's label", in, out)
		}
	})
}
