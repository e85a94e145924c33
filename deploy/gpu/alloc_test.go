package gpu

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"all", "all", false},
		{"2", "2", false},
		{"device=0,2", "device=0+2", false},
		{"device=0+1:2", "device=0+1:2", false},
		{"device=GPU-dfcf7acb-acaa-34f7-7259-867f8f57fb56", "device=GPU-dfcf7acb-acaa-34f7-7259-867f8f57fb56", false},
		{"0", "", true}, {"-1", "", true}, {"many", "", true}, {"100000", "", true},
		{"device=", "", true}, {"device=0,,1", "", true}, {"device=0,", "", true},
		{"device=0,0", "", true}, {"device=x", "", true}, {"device=0 1", "", true},
	} {
		r, err := ParseRequest(tc.in)
		if tc.err != (err != nil) || err == nil && r.String() != tc.want {
			t.Errorf("%q: %v (%q), %v", tc.in, r, r.String(), err)
		}
	}
}

func TestLimitsFor(t *testing.T) {
	l := Limits{
		Default: Limit{Max: 1},
		Users:   map[string]Limit{"root-ish": {Max: Unlimited, All: true}, "alice": {Max: 3}},
		Groups:  map[string]Limit{"students": {Max: 1}, "researchers": {Max: 2}, "admins": {Max: 2, All: true}, "ops": {Max: Unlimited}},
	}
	for _, tc := range []struct {
		u    User
		want Limit
		from string
	}{
		{User{Login: "alice", Groups: []string{"ops"}}, Limit{Max: 3}, "user alice"},
		{User{Login: "bob", Groups: []string{"students", "researchers"}}, Limit{Max: 2}, "group researchers"},
		{User{Login: "carol", Groups: []string{"researchers", "admins"}}, Limit{Max: 2, All: true}, "group admins"},
		{User{Login: "dave", Groups: []string{"admins", "ops"}}, Limit{Max: Unlimited}, "group ops"},
		{User{Login: "erin", Groups: []string{"nobody"}}, Limit{Max: 1}, "default"},
	} {
		got, from := l.For(tc.u)
		if got != tc.want || !strings.Contains(from, tc.from) {
			t.Errorf("%s: %+v from %q, want %+v from %s", tc.u.Login, got, from, tc.want, tc.from)
		}
	}
}

func TestAllocate(t *testing.T) {
	h100 := recorded(t, "h100-mig") // grantable: 0:0 0:1 0:2 0:3 1 2:0 2:1 2:2 3
	a100 := recorded(t, "a100x8")
	reset := recorded(t, "a6000-reset")
	alice := User{Login: "alice", UID: 1001, Groups: []string{"students"}}
	bob := User{Login: "bob", UID: 1002, Groups: []string{"researchers"}}
	lim := Limits{Default: Limit{Max: 2}, Groups: map[string]Limit{"researchers": {Max: Unlimited, All: true}}}
	held := func(inv Inventory, uid uint32, login, container string, idx ...string) []Holding {
		var hs []Holding
		for _, i := range idx {
			d, ok := inv.Find(i)
			if !ok {
				t.Fatalf("no device %s", i)
			}
			hs = append(hs, Holding{Ref: Ref{Index: d.Index, UUID: d.UUID}, UID: uid, Login: login, Container: container})
		}
		return hs
	}
	bobA100 := held(a100, 1002, "bob", "big._.1002", "0", "2")
	for _, tc := range []struct {
		name string
		inv  Inventory
		req  string
		user User
		held []Holding
		want string // indices granted, or the rule refused by
		msg  string // in the refusal
	}{
		{"count takes lowest free", a100, "2", alice, bobA100, "1 3", ""},
		{"count on MIG takes MIG devices", h100, "2", alice, nil, "0:0 0:1", ""},
		{"count skips held MIG devices", h100, "2", alice, held(h100, 1002, "bob", "b._.1002", "0:0", "0:2"), "0:1 0:3", ""},
		{"count skips errored GPU", reset, "2", bob, held(reset, 1001, "alice", "a._.1001", "0"), "1 3", ""},
		{"device by index and UUID", a100, "device=5," + a100.Devices[3].UUID, alice, bobA100, "3 5", ""},
		{"device MIG by index", h100, "device=2:1", alice, nil, "2:1", ""},
		{"all takes every free", a100, "all", bob, held(a100, 1001, "alice", "a._.1001", "7"), "0 1 2 3 4 5 6", ""},
		{"unlimited group", a100, "8", bob, nil, "0 1 2 3 4 5 6 7", ""},
		{"over the limit", a100, "1", alice, held(a100, 1001, "alice", "x._.1001", "4", "6"), RuleLimit,
			"GPU limit: user alice may hold 2 GPUs (the default limit) and holds 2 (container x._.1001: " + a100.Devices[4].UUID + "+" + a100.Devices[6].UUID + "); 1 more asked; retire one (ds01 container retire NAME)"},
		{"over the limit at once", a100, "3", alice, nil, RuleLimit, "may hold 2 GPUs (the default limit) and holds 0; 3 more asked; ask for fewer"},
		{"device over the limit", a100, "device=1,2,3", alice, nil, RuleLimit, "3 more asked"},
		{"all not allowed", a100, "all", alice, nil, RuleAll, "--gpus all is not allowed for user alice (the default limit)"},
		{"not enough free", a100, "3", bob, held(a100, 1001, "alice", "a._.1001", "0", "1", "2", "3", "4", "5"), RuleFree, "3 asked, 2 of 8 free"},
		{"all with none free", reset, "all", bob, held(reset, 1001, "alice", "a._.1001", "0", "1", "3"), RuleFree, "all 3 GPUs are held"},
		{"device held by another", a100, "device=2", alice, bobA100, RuleDevice, "GPU 2 (" + a100.Devices[2].UUID + ") is held by bob in container big._.1002"},
		{"device held by oneself", a100, "device=2", bob, bobA100, RuleDevice, "is held by bob in container big._.1002; only free GPUs can be named: --gpus N picks free ones; user bob holds 2 (container big._.1002: "},
		{"device unknown", a100, "device=9", alice, nil, RuleDevice, "there is no GPU 9"},
		{"device in error", reset, "device=2", alice, nil, RuleDevice, "GPU 2 (" + reset.Devices[2].UUID + ") is in error: memory.total: GPU requires reset"},
		{"device in MIG mode", h100, "device=0", alice, nil, RuleDevice, "GPU 0 is in MIG mode: name one of its MIG devices (0:0"},
		{"device twice", a100, "device=1," + a100.Devices[1].UUID, bob, nil, RuleDevice, "named twice"},
		{"GPU held whole before MIG", h100, "device=0:1", alice, []Holding{{Ref: Ref{"0", h100.Devices[0].UUID}, UID: 1002, Login: "bob", Container: "old._.1002"}}, RuleDevice, "held by bob in container old._.1002"},
		{"no NVIDIA stack", Inventory{NoGPUs: "no NVIDIA stack: nvidia-smi not found"}, "1", alice, nil, RuleNoGPUs, "no GPUs to grant (no NVIDIA stack: nvidia-smi not found); deploy without --gpus"},
		{"nothing grantable", Inventory{Devices: []Device{{Index: "0", UUID: "GPU-1", Err: "x"}}}, "1", alice, nil, RuleNoGPUs, "of its 1 devices none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseRequest(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			al, err := Allocate(Ask{Inventory: tc.inv, Request: req, User: tc.user, Limits: lim}, tc.held)
			var r *Refusal
			if errors.As(err, &r) {
				if r.Rule != tc.want || !strings.Contains(err.Error(), tc.msg) || !errors.Is(err, ErrRefused) || !strings.HasPrefix(err.Error(), tc.want+": ") {
					t.Fatalf("refused: %v\nwant %s: …%s…", err, tc.want, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range al.Devices {
				got = append(got, d.Index)
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("granted %v, want %s", got, tc.want)
			}
			if n := len(al.UUIDs()); n != len(got) || al.UUIDs()[0] != al.Devices[0].UUID {
				t.Errorf("UUIDs %v", al.UUIDs())
			}
			refs, err := DecodeLabels(al.Labels())
			if err != nil || len(refs) != len(got) || refs[0].Index != got[0] {
				t.Errorf("labels %v → %v, %v", al.Labels(), refs, err)
			}
		})
	}
}

// Allocations made one after another, each seeing the holdings of the
// ones before, never overlap, and stop exactly when the devices run out.
func TestAllocateSequenceDisjoint(t *testing.T) {
	inv := recorded(t, "h100-mig")
	var held []Holding
	seen := map[string]bool{}
	for n := 0; ; n++ {
		u := User{Login: "u", UID: uint32(2000 + n)}
		al, err := Allocate(Ask{Inventory: inv, Request: Request{Count: 2}, User: u, Limits: Limits{Default: Limit{Max: 2}}}, held)
		if err != nil {
			if !strings.Contains(err.Error(), "2 asked, 1 of 9 free") || n != 4 {
				t.Fatalf("after %d allocations: %v", n, err)
			}
			return
		}
		for _, r := range al.Refs() {
			if seen[r.UUID] {
				t.Fatalf("%s granted twice", r.UUID)
			}
			seen[r.UUID] = true
			held = append(held, Holding{Ref: r, UID: u.UID})
		}
	}
}
