package identity

import (
	"fmt"
	"os/user"
	"strconv"

	"github.com/ds01/ds01/passwd"
)

// Host finds a login through NSS (LDAP too, as the binary is built
// with cgo's resolver where the host has it), with its groups.
func Host(login string) (Account, error) {
	u, err := user.Lookup(login)
	if err != nil {
		return Account{}, err
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return Account{}, fmt.Errorf("host account %s has non-numeric IDs %q:%q", login, u.Uid, u.Gid)
	}
	a := Account{Login: u.Username, UID: uint32(uid), GID: uint32(gid)}
	ids, err := u.GroupIds()
	if err != nil {
		return Account{}, fmt.Errorf("groups of %s: %w", login, err)
	}
	for _, s := range ids {
		g, err := strconv.ParseUint(s, 10, 32)
		if err != nil || uint32(g) == a.GID {
			continue
		}
		hg := passwd.HostGroup{GID: uint32(g)}
		if grp, err := user.LookupGroupId(s); err == nil {
			hg.Name = grp.Name
		}
		a.Groups = append(a.Groups, hg)
	}
	return a, nil
}
