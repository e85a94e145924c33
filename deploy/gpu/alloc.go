package gpu

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Unlimited is a Limit.Max without bound.
const Unlimited = -1

// Limit is how many devices one user may hold at once (a MIG device counts
// as one), and whether --gpus all is theirs to ask.
type Limit struct {
	Max int  `json:"max"`
	All bool `json:"all"`
}

// Limits is the policy's: a user's own limit if it has one, else the most
// generous of the user's groups', else Default.
type Limits struct {
	Default Limit            `json:"default"`
	Users   map[string]Limit `json:"users,omitempty"`  // by login
	Groups  map[string]Limit `json:"groups,omitempty"` // by group name
}

// User is whom a request is for.
type User struct {
	Login  string
	UID    uint32
	Groups []string // names, the primary group's included
}

// For is u's limit and where it comes from, for a message.
func (l Limits) For(u User) (Limit, string) {
	if lim, ok := l.Users[u.Login]; ok {
		return lim, "the limit of user " + u.Login
	}
	best, from := Limit{}, ""
	for _, g := range slices.Sorted(slices.Values(u.Groups)) {
		lim, ok := l.Groups[g]
		if ok && (from == "" || generous(lim, best) > 0) {
			best, from = lim, "the limit of group "+g
		}
	}
	if from != "" {
		return best, from
	}
	return l.Default, "the default limit"
}

// generous orders limits: more devices first, then all allowed.
func generous(a, b Limit) int {
	m := func(x int) int {
		if x < 0 {
			return int(^uint(0) >> 1)
		}
		return x
	}
	return cmp.Or(cmp.Compare(m(a.Max), m(b.Max)), cmp.Compare(boolInt(a.All), boolInt(b.All)))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Ask is one request with all it is judged by.
type Ask struct {
	Inventory Inventory
	Request   Request
	User      User
	Limits    Limits
}

// Allocation is the devices granted, lowest index first.
type Allocation struct {
	Devices []Device `json:"devices"`
}

// UUIDs are what the container's device request names.
func (a Allocation) UUIDs() []string {
	var out []string
	for _, d := range a.Devices {
		out = append(out, d.UUID)
	}
	return out
}

// Refs are the devices as the labels record them.
func (a Allocation) Refs() []Ref {
	var out []Ref
	for _, d := range a.Devices {
		out = append(out, Ref{Index: d.Index, UUID: d.UUID})
	}
	return out
}

// Labels are the container labels recording a.
func (a Allocation) Labels() map[string]string { return EncodeLabels(a.Refs()) }

// Allocate picks the devices a.Request gets given what held says is
// held, or refuses with a *Refusal. Counts take the free devices of
// lowest index; named devices must each be free; all takes every free
// device and only where the user's limit allows it. Devices in error and
// GPUs in MIG mode (whose MIG devices are offered instead) are never
// granted.
func Allocate(a Ask, held []Holding) (Allocation, error) {
	lim, from := a.Limits.For(a.User)
	mine := holdsOf(held, a.User.UID)
	refuse := func(rule, msg string) error {
		return &Refusal{Rule: rule, Login: a.User.Login, UID: a.User.UID, Request: a.Request, Holds: mine, msg: msg}
	}
	grantable := a.Inventory.Grantable()
	if len(grantable) == 0 {
		why := a.Inventory.NoGPUs
		if why == "" {
			why = fmt.Sprintf("of its %d devices none can be granted (in error, or in MIG mode without MIG devices)", len(a.Inventory.Devices))
		}
		return Allocation{}, refuse(RuleNoGPUs, fmt.Sprintf("this server has no GPUs to grant (%s); deploy without --gpus", why))
	}
	if a.Request.All && !lim.All {
		return Allocation{}, refuse(RuleAll, fmt.Sprintf("--gpus all is not allowed for user %s (%s); ask for a count instead, e.g. --gpus 1", a.User.Login, from))
	}
	if w := a.Request.want(); w > 0 && lim.Max != Unlimited && len(uuidsOf(mine))+w > lim.Max {
		return Allocation{}, refuse(RuleLimit, limitMessage(a.User.Login, lim.Max, from, mine, w))
	}
	holder := holders(held)
	free := slices.DeleteFunc(slices.Clone(grantable), func(d Device) bool { return isHeld(holder, d) })
	switch {
	case len(a.Request.Devices) > 0:
		ds, err := named(a.Inventory, holder, a.Request.Devices)
		if err != nil {
			return Allocation{}, refuse(RuleDevice, err.Error())
		}
		sortDevices(ds)
		return Allocation{Devices: ds}, nil
	case a.Request.All:
		if len(free) == 0 {
			return Allocation{}, refuse(RuleFree, fmt.Sprintf("all %d GPUs are held (ds01 gpu list shows by whom); try again later", len(grantable)))
		}
		return Allocation{Devices: free}, nil
	case a.Request.Count > len(free):
		return Allocation{}, refuse(RuleFree, fmt.Sprintf("%d asked, %d of %d free (ds01 gpu list shows who holds the rest); ask for fewer or try again later", a.Request.Count, len(free), len(grantable)))
	case a.Request.Count <= 0:
		return Allocation{}, refuse(RuleDevice, "ask for a count from 1, device=… or all")
	}
	return Allocation{Devices: free[:a.Request.Count]}, nil
}

// named resolves device=… to free, grantable devices.
func named(inv Inventory, holder map[string]Holding, ids []string) ([]Device, error) {
	var out []Device
	for _, id := range ids {
		d, ok := inv.Find(id)
		switch {
		case !ok:
			return nil, fmt.Errorf("there is no GPU %s on this server (ds01 gpu list shows them)", id)
		case d.Err != "":
			return nil, fmt.Errorf("GPU %s (%s) is in error: %s; name another or ask for a count", d.Index, d.UUID, d.Err)
		case d.MIG && !d.IsMIGDevice():
			return nil, fmt.Errorf("GPU %s is in MIG mode: name one of its MIG devices (%s:0, …; ds01 gpu list) or ask for a count", d.Index, d.Index)
		case isHeld(holder, d):
			h := holder[d.UUID]
			if h.UUID == "" {
				h = holder[d.Parent]
			}
			return nil, fmt.Errorf("GPU %s (%s) is held by %s in container %s; only free GPUs can be named: --gpus N picks free ones", d.Index, d.UUID, h.Login, h.Container)
		case slices.ContainsFunc(out, func(o Device) bool { return o.UUID == d.UUID }):
			return nil, fmt.Errorf("GPU %s (%s) is named twice", d.Index, d.UUID)
		}
		out = append(out, d)
	}
	return out, nil
}

// holders maps each held UUID to its first holding.
func holders(held []Holding) map[string]Holding {
	m := map[string]Holding{}
	for _, h := range held {
		if _, ok := m[h.UUID]; !ok {
			m[h.UUID] = h
		}
	}
	return m
}

// isHeld: a device is held when it is, or when its GPU is held whole (a
// holding made before MIG mode was turned on).
func isHeld(holder map[string]Holding, d Device) bool {
	_, a := holder[d.UUID]
	_, b := holder[d.Parent]
	return a || d.Parent != "" && b
}

func holdsOf(held []Holding, uid uint32) []Holding {
	var out []Holding
	for _, h := range held {
		if h.UID == uid {
			out = append(out, h)
		}
	}
	return out
}

func uuidsOf(hs []Holding) map[string]bool {
	m := map[string]bool{}
	for _, h := range hs {
		m[h.UUID] = true
	}
	return m
}

func limitMessage(login string, max int, from string, mine []Holding, want int) string {
	n := len(uuidsOf(mine))
	what := "retire one (ds01 container retire NAME), ask for fewer, or ask an administrator"
	if n == 0 {
		what = "ask for fewer or ask an administrator"
	}
	return fmt.Sprintf("user %s may hold %s (%s) and holds %d%s; %d more asked; %s", login, plural(max, "GPU"), from, n, holdsText(mine), want, what)
}

// holdsText is " (container a: GPU-…+GPU-…; container b: MIG-…)".
func holdsText(hs []Holding) string {
	if len(hs) == 0 {
		return ""
	}
	by := map[string][]string{}
	for _, h := range hs {
		by[h.Container] = append(by[h.Container], h.UUID)
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(by)) {
		parts = append(parts, "container "+c+": "+strings.Join(by[c], Sep))
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// The rules a request is refused by.
const (
	RuleLimit  = "GPU limit"  // over the user's limit
	RuleFree   = "GPUs free"  // more asked than free
	RuleAll    = "GPU all"    // --gpus all where the policy does not allow it
	RuleDevice = "GPU device" // a named device that is unknown, held, in error or in MIG mode
	RuleNoGPUs = "no GPUs"    // nothing on this server to grant
)

// ErrRefused matches every *Refusal with errors.Is.
var ErrRefused = errors.New("GPU request refused")

// Refusal is a request the policy refuses: the rule, and what the user
// holds now.
type Refusal struct {
	Rule    string
	Login   string
	UID     uint32
	Request Request
	Holds   []Holding
	msg     string
}

func (r *Refusal) Error() string {
	s := r.Rule + ": " + r.msg
	if r.Rule != RuleLimit && len(r.Holds) > 0 {
		s += fmt.Sprintf("; user %s holds %d%s", r.Login, len(uuidsOf(r.Holds)), holdsText(r.Holds))
	}
	return s
}

func (r *Refusal) Is(target error) bool { return target == ErrRefused }
