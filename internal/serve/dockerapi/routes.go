package dockerapi

import (
	"strconv"
	"strings"
)

// kind is how a route is checked before it reaches the daemon.
type kind int

const (
	open           kind = iota // anyone: version negotiation and daemon facts
	ownContainer               // {id} must be a container labelled for the caller
	ownExec                    // {id} must be an exec in such a container
	ownImage                   // {name} must be an image labelled for the caller
	execCreate                 // ownContainer, and the exec's user and privilege checked
	listContainers             // filtered to the caller's
	listImages                 // filtered to the caller's
	events                     // filtered to the caller's
	refused                    // never, with the rule and what to use instead
)

// route is one (method, path pattern) of the Docker API, as moby's
// router names them (daemon/server/router/*): "{id}" matches one path
// segment (a container or exec), "{name}" one or more (an image name may
// hold slashes).
type route struct {
	method, pattern string
	kind            kind
	action          string // for the audit log
	body            bool   // the request body reaches the daemon (after its checks)
	rule            string // for refused routes
	why             string
}

// Rules, as the audit log and refusal messages name them.
const (
	RuleRoot          = "root"            // root's requests pass through
	RuleOpen          = "open"            // version negotiation, daemon facts
	RuleOwnContainers = "own-containers"  // only containers labelled ds01.user_id=caller
	RuleOwnImages     = "own-images"      // only images labelled ds01.user_id=caller
	RuleOwnList       = "own-list"        // lists and events filtered to the caller's
	RuleExecUser      = "exec-user"       // an exec runs as the container's user
	RuleExecPriv      = "exec-privileged" // no privileged exec
	RuleCreate        = "create-through-ds01"
	RuleImages        = "images-through-ds01"
	RulePull          = "pull-through-ds01"
	RuleRetire        = "retire-through-ds01"
	RuleNames         = "names-by-ds01"
	RuleLimits        = "limits-by-policy"
	RuleShared        = "no-shared-objects" // volumes, networks: every user's
	RuleHost          = "host-administration"
	RuleAllowList     = "allow-list"  // default deny
	RuleAPIVersion    = "api-version" // API below 1.24 took a HostConfig on start
	RuleIdentity      = "kernel-identity"
	RuleBody          = "request-body"
	RuleCopyIn        = "no-copy-in" // the daemon would unpack as root, device nodes and setuid files included
)

const (
	whyCreate = `containers are made by ds01 alone (your user, your slice, your GPUs, checked binds); use "ds01 container deploy NAME"`
	whyImages = `images are assembled by ds01, never built or committed through Docker; use "ds01 image create PROJECT" (and "ds01 container retire NAME --save" to keep a container's changes)`
	whyPull   = `bases are pulled by ds01 from the catalog or the registries the policy allows; use "ds01 base pull REF"`
	whyRetire = `use "ds01 container retire NAME" (it also removes the container's bind pins)`
	whyImgRm  = `use "ds01 image retire PROJECT"`
	whyNames  = `container names are ds01's (NAME._.UID); deploy a container under the new name with "ds01 container deploy NAME"`
	whyLimits = `a container's resources are set by the administrator's policy at deploy; ask an administrator`
	whyShared = `Docker volumes and networks are shared by every user of the server and not offered; bind your own directories with "ds01 container deploy NAME --data DIR"`
	whyHost   = `this is the host's administration, for root only`
	whyCopyIn = `the daemon unpacks a copy into a container as root on the host (device nodes and setuid files included, into bound host directories too); put files into your workspace (~/workspace/NAME, /workspace inside) instead`
	whyAll    = `removing or pruning across the daemon would touch other users' objects; use "ds01 container retire NAME" or "ds01 image retire PROJECT"`
)

// routes is the allow-list, and the refusals that have a better answer
// than the default one. Anything else is refused by RuleAllowList.
var routes = []route{
	{method: "GET", pattern: "/_ping", kind: open, action: "docker.ping"},
	{method: "HEAD", pattern: "/_ping", kind: open, action: "docker.ping"},
	{method: "GET", pattern: "/version", kind: open, action: "docker.version"},
	{method: "GET", pattern: "/info", kind: open, action: "docker.info"},
	{method: "GET", pattern: "/events", kind: events, action: "docker.events"},

	{method: "GET", pattern: "/containers/json", kind: listContainers, action: "docker.container.list"},
	{method: "GET", pattern: "/containers/{id}/json", kind: ownContainer, action: "docker.container.inspect"},
	{method: "GET", pattern: "/containers/{id}/top", kind: ownContainer, action: "docker.container.top"},
	{method: "GET", pattern: "/containers/{id}/logs", kind: ownContainer, action: "docker.container.logs"},
	{method: "GET", pattern: "/containers/{id}/stats", kind: ownContainer, action: "docker.container.stats"},
	{method: "GET", pattern: "/containers/{id}/changes", kind: ownContainer, action: "docker.container.changes"},
	{method: "GET", pattern: "/containers/{id}/export", kind: ownContainer, action: "docker.container.export"},
	{method: "GET", pattern: "/containers/{id}/attach/ws", kind: ownContainer, action: "docker.container.attach"},
	{method: "HEAD", pattern: "/containers/{id}/archive", kind: ownContainer, action: "docker.container.archive"},
	{method: "GET", pattern: "/containers/{id}/archive", kind: ownContainer, action: "docker.container.archive"},
	{method: "PUT", pattern: "/containers/{id}/archive", kind: refused, action: "docker.container.archive", rule: RuleCopyIn, why: whyCopyIn},
	{method: "POST", pattern: "/containers/{id}/start", kind: ownContainer, action: "docker.container.start"},
	{method: "POST", pattern: "/containers/{id}/stop", kind: ownContainer, action: "docker.container.stop"},
	{method: "POST", pattern: "/containers/{id}/restart", kind: ownContainer, action: "docker.container.restart"},
	{method: "POST", pattern: "/containers/{id}/kill", kind: ownContainer, action: "docker.container.kill"},
	{method: "POST", pattern: "/containers/{id}/pause", kind: ownContainer, action: "docker.container.pause"},
	{method: "POST", pattern: "/containers/{id}/unpause", kind: ownContainer, action: "docker.container.unpause"},
	{method: "POST", pattern: "/containers/{id}/wait", kind: ownContainer, action: "docker.container.wait"},
	{method: "POST", pattern: "/containers/{id}/resize", kind: ownContainer, action: "docker.container.resize"},
	{method: "POST", pattern: "/containers/{id}/attach", kind: ownContainer, action: "docker.container.attach"},
	{method: "POST", pattern: "/containers/{id}/exec", kind: execCreate, action: "docker.container.exec", body: true},
	{method: "GET", pattern: "/exec/{id}/json", kind: ownExec, action: "docker.exec.inspect"},
	{method: "POST", pattern: "/exec/{id}/start", kind: ownExec, action: "docker.exec.start", body: true},
	{method: "POST", pattern: "/exec/{id}/resize", kind: ownExec, action: "docker.exec.resize"},

	{method: "GET", pattern: "/images/json", kind: listImages, action: "docker.image.list"},
	{method: "GET", pattern: "/images/{name}/json", kind: ownImage, action: "docker.image.inspect"},
	{method: "GET", pattern: "/images/{name}/history", kind: ownImage, action: "docker.image.history"},

	{method: "POST", pattern: "/containers/create", kind: refused, action: "docker.container.create", rule: RuleCreate, why: whyCreate},
	{method: "POST", pattern: "/containers/{id}/rename", kind: refused, action: "docker.container.rename", rule: RuleNames, why: whyNames},
	{method: "POST", pattern: "/containers/{id}/update", kind: refused, action: "docker.container.update", rule: RuleLimits, why: whyLimits},
	{method: "DELETE", pattern: "/containers/{id}", kind: refused, action: "docker.container.remove", rule: RuleRetire, why: whyRetire},
	{method: "POST", pattern: "/containers/prune", kind: refused, action: "docker.container.prune", rule: RuleRetire, why: whyAll},
	{method: "POST", pattern: "/commit", kind: refused, action: "docker.container.commit", rule: RuleImages, why: whyImages},
	{method: "POST", pattern: "/build", kind: refused, action: "docker.image.build", rule: RuleImages, why: whyImages},
	{method: "POST", pattern: "/images/load", kind: refused, action: "docker.image.load", rule: RuleImages, why: whyImages},
	{method: "POST", pattern: "/images/create", kind: refused, action: "docker.image.pull", rule: RulePull, why: whyPull},
	{method: "POST", pattern: "/images/{name}/tag", kind: refused, action: "docker.image.tag", rule: RuleImages, why: whyImages},
	{method: "POST", pattern: "/images/{name}/push", kind: refused, action: "docker.image.push", rule: RuleImages, why: whyImages},
	{method: "DELETE", pattern: "/images/{name}", kind: refused, action: "docker.image.remove", rule: RuleImages, why: whyImgRm},
	{method: "POST", pattern: "/images/prune", kind: refused, action: "docker.image.prune", rule: RuleImages, why: whyAll},
}

// prefixRefusals answer whole families of the API that ds01 does not
// offer, with their reason.
var prefixRefusals = []struct {
	prefix, action, rule, why string
}{
	{"/build", "docker.build", RuleImages, whyImages},
	{"/volumes", "docker.volume", RuleShared, whyShared},
	{"/networks", "docker.network", RuleShared, whyShared},
	{"/plugins", "docker.plugin", RuleHost, whyHost},
	{"/swarm", "docker.swarm", RuleHost, whyHost},
	{"/nodes", "docker.swarm", RuleHost, whyHost},
	{"/services", "docker.swarm", RuleHost, whyHost},
	{"/tasks", "docker.swarm", RuleHost, whyHost},
	{"/secrets", "docker.swarm", RuleHost, whyHost},
	{"/configs", "docker.swarm", RuleHost, whyHost},
	{"/system", "docker.system", RuleHost, whyHost},
	{"/session", "docker.image.build", RuleImages, whyImages},
	{"/grpc", "docker.image.build", RuleImages, whyImages},
	{"/distribution", "docker.distribution", RulePull, whyPull},
	{"/auth", "docker.auth", RulePull, whyPull},
}

// match finds the route for method and path (without the version
// prefix) and the value of its variable.
func match(method, path string) (*route, string) {
	if !strings.HasPrefix(path, "/") {
		return nil, ""
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, ""
		}
	}
	for i := range routes {
		r := &routes[i]
		if r.method != method {
			continue
		}
		if v, ok := matchPattern(r.pattern, segs); ok {
			return r, v
		}
	}
	return nil, ""
}

func matchPattern(pattern string, segs []string) (string, bool) {
	pat := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	vi := -1
	for i, p := range pat {
		if p == "{id}" || p == "{name}" {
			vi = i
		}
	}
	if vi < 0 {
		return "", equal(pat, segs)
	}
	pre, post := pat[:vi], pat[vi+1:]
	n := len(segs) - len(pre) - len(post) // segments the variable takes
	if n < 1 || (pat[vi] == "{id}" && n != 1) {
		return "", false
	}
	if !equal(pre, segs[:len(pre)]) || !equal(post, segs[len(segs)-len(post):]) {
		return "", false
	}
	return strings.Join(segs[len(pre):len(pre)+n], "/"), true
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// splitVersion takes the /vX.Y prefix off path: the version ("" when
// none) and the rest.
func splitVersion(path string) (version, rest string) {
	if !strings.HasPrefix(path, "/v") {
		return "", path
	}
	i := strings.IndexByte(path[1:], '/')
	if i < 0 {
		return "", path
	}
	v := path[2 : i+1]
	if v == "" || strings.Trim(v, "0123456789.") != "" {
		return "", path
	}
	return v, path[i+1:]
}

// oldAPI reports whether version is below 1.24: those versions let a
// start request carry a HostConfig (binds, privileged) that the daemon
// applies, so they are refused rather than trusted to be body-less.
func oldAPI(version string) bool {
	if version == "" {
		return false
	}
	major, minor, _ := strings.Cut(version, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return true
	}
	return ma < 1 || ma == 1 && mi < 24
}
