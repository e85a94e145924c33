package identity

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ds01/ds01/passwd"
)

var sudoEnv = env(map[string]string{"SUDO_USER": "alice", "SUDO_UID": "1001", "SUDO_GID": "100"})

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func u32(v uint32) *uint32 { return &v }

func lookup(login string) (Account, error) {
	switch login {
	case "h.baker@hertie-school.lan":
		return Account{Login: login, UID: 1722830498, GID: 1722830498, Groups: []passwd.HostGroup{{Name: "proj", GID: 4242}}}, nil
	case "alice":
		return Account{Login: login, UID: 1001, GID: 100}, nil
	}
	return Account{}, errors.New("unknown user")
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       Process
		o       Overrides
		want    Identity
		wantErr string
	}{
		{name: "plain user", p: Process{UID: 1722830498, GID: 1722830498, Login: "h.baker@hertie-school.lan"},
			want: Identity{Login: "h.baker@hertie-school.lan", Name: "h-baker", UID: 1722830498, GID: 1722830498, Groups: []passwd.HostGroup{{Name: "proj", GID: 4242}}, Known: true}},
		{name: "through sudo: the user's rights, not root's", p: Process{UID: 0, GID: 0, Login: "root", Getenv: sudoEnv},
			want: Identity{Login: "alice", Name: "alice", UID: 1001, GID: 100, Known: true, Sudo: true}},
		{name: "through sudo, --user refused", p: Process{Login: "root", Getenv: sudoEnv}, o: Overrides{Login: "h.baker@hertie-school.lan"}, wantErr: "through sudo, which gives ds01 your rights and no others"},
		{name: "through sudo, --uid refused", p: Process{Login: "root", Getenv: sudoEnv}, o: Overrides{Login: "alice", UID: u32(5), GID: u32(5)}, wantErr: "for root itself only"},
		{name: "through sudo, made-up SUDO_UID", p: Process{Login: "root", Getenv: env(map[string]string{"SUDO_USER": "alice", "SUDO_UID": "1722830498", "SUDO_GID": "100"})}, wantErr: "SUDO_UID/SUDO_GID say"},
		{name: "through sudo, unknown SUDO_USER", p: Process{Login: "root", Getenv: env(map[string]string{"SUDO_USER": "mallory", "SUDO_UID": "1", "SUDO_GID": "1"})}, wantErr: "no such account"},
		{name: "root through sudo is root", p: Process{Login: "root", Getenv: env(map[string]string{"SUDO_USER": "root", "SUDO_UID": "0", "SUDO_GID": "0"})}, o: Overrides{Login: "alice"},
			want: Identity{Login: "alice", Name: "alice", UID: 1001, GID: 100, Known: true, Root: true}},
		{name: "root for another user, looked up", p: Process{Login: "root"}, o: Overrides{Login: "h.baker@hertie-school.lan"},
			want: Identity{Login: "h.baker@hertie-school.lan", Name: "h-baker", UID: 1722830498, GID: 1722830498, Groups: []passwd.HostGroup{{Name: "proj", GID: 4242}}, Known: true, Root: true}},
		{name: "root for a known user with other IDs", p: Process{Login: "root"}, o: Overrides{Login: "alice", UID: u32(20000000), GID: u32(20000000)},
			want: Identity{Login: "alice", Name: "alice", UID: 20000000, GID: 20000000, Root: true}},
		{name: "root for an unknown user with IDs", p: Process{Login: "root"}, o: Overrides{Login: "x.y@lab", UID: u32(20000000), GID: u32(20000000)},
			want: Identity{Login: "x.y@lab", Name: "x-y", UID: 20000000, GID: 20000000, Root: true}},
		{name: "root for an unknown user without IDs", p: Process{Login: "root"}, o: Overrides{Login: "nobody.here"}, wantErr: "give --uid and --gid"},
		{name: "uid without user", p: Process{Login: "root"}, o: Overrides{UID: u32(5)}, wantErr: "need --user LOGIN"},
		{name: "non-root may not override", p: Process{UID: 1000, GID: 1000, Login: "bob"}, o: Overrides{Login: "alice"}, wantErr: "for root itself only"},
		{name: "login that sanitizes to nothing", p: Process{UID: 1000, GID: 1000, Login: "..."}, wantErr: "empty user name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.p, tc.o, lookup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestCheckUser(t *testing.T) {
	if err := (Identity{Login: "root"}).CheckUser(); err == nil || !strings.Contains(err.Error(), "--user LOGIN") {
		t.Errorf("root: %v", err)
	}
	if err := (Identity{Login: "a", UID: 5, GID: 5}).CheckUser(); err != nil {
		t.Error(err)
	}
}
