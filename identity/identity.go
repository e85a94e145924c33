// Package identity decides whom a ds01 command acts for and with whose
// rights: the calling user with their own; the user behind sudo with
// exactly that user's rights, never root's; or, for root itself only, the
// user named by --user, --uid and --gid.
package identity

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/passwd"
)

// Process is what the operating system says of the caller.
type Process struct {
	UID, GID uint32
	Login    string              // the name of UID on the host ("" if unknown)
	Getenv   func(string) string // for SUDO_USER, SUDO_UID, SUDO_GID
}

// Overrides are the global flags. A nil pointer is a flag not given.
type Overrides struct {
	Login    string
	UID, GID *uint32
}

func (o Overrides) any() bool { return o.Login != "" || o.UID != nil || o.GID != nil }

// Account is a login as the host's NSS (files, LDAP) knows it.
type Account struct {
	Login    string
	UID, GID uint32
	Groups   []passwd.HostGroup // supplementary groups, without GID
}

// Lookup finds a login on the host (through NSS, so LDAP users are found
// too).
type Lookup func(login string) (Account, error)

// Identity is the user a command acts for, and who asked.
type Identity struct {
	Login  string // as the host knows it: h.baker@hertie-school.lan
	Name   string // sanitized, as images know it: h-baker
	UID    uint32
	GID    uint32
	Groups []passwd.HostGroup // the host's supplementary groups of the account
	// Known is true when the host has the account, so that ds01 can do
	// the user's file work with the user's credentials.
	Known bool
	// Root is true when root itself called, not a user through sudo: only
	// then may the command act for another user or use root-only options.
	Root bool
	// Sudo is true when the caller came through sudo: the process is
	// root's, the rights are SUDO_USER's alone.
	Sudo bool
}

// ErrNotRoot is returned when anyone but root uses the override flags.
var ErrNotRoot = errors.New("--user, --uid and --gid act for another user and are for root itself only")

// Resolve applies the rules: root's overrides win; through sudo the
// caller is SUDO_USER, checked against the host's account; otherwise the
// caller is the process's own user.
func Resolve(p Process, o Overrides, lookup Lookup) (Identity, error) {
	id := Identity{Login: p.Login, UID: p.UID, GID: p.GID, Root: p.UID == 0}
	if p.UID == 0 && p.Getenv != nil {
		if su := p.Getenv("SUDO_USER"); su != "" && su != "root" {
			acct, err := sudoAccount(su, p.Getenv, lookup)
			if err != nil {
				return Identity{}, err
			}
			id = fromAccount(acct)
			id.Sudo = true
		}
	}
	if o.any() {
		if !id.Root {
			who := fmt.Sprintf("you are %s (UID %d)", id.Login, id.UID)
			if id.Sudo {
				who += ", through sudo, which gives ds01 your rights and no others"
			}
			return Identity{}, fmt.Errorf("%w; %s", ErrNotRoot, who)
		}
		var err error
		if id, err = override(o, lookup); err != nil {
			return Identity{}, err
		}
	} else if id.UID == p.UID && !id.Sudo && lookup != nil && id.Login != "" {
		if acct, err := lookup(id.Login); err == nil && acct.UID == id.UID {
			id.Groups, id.Known = acct.Groups, true
		}
	}
	if id.Login == "" {
		return Identity{}, fmt.Errorf("UID %d has no name on this host; root can name it with --user LOGIN", id.UID)
	}
	name, err := passwd.Sanitize(id.Login)
	if err != nil {
		return Identity{}, fmt.Errorf("login %q: %w", id.Login, err)
	}
	id.Name = name
	return id, nil
}

// sudoAccount is SUDO_USER as the host knows it; SUDO_UID and SUDO_GID
// must agree, or the environment was made up.
func sudoAccount(login string, getenv func(string) string, lookup Lookup) (Account, error) {
	acct, err := lookup(login)
	if err != nil {
		return Account{}, fmt.Errorf("through sudo for %s: the host has no such account (%v); run ds01 as yourself or as root", login, err)
	}
	uid, err1 := strconv.ParseUint(getenv("SUDO_UID"), 10, 32)
	gid, err2 := strconv.ParseUint(getenv("SUDO_GID"), 10, 32)
	if err1 != nil || err2 != nil || uint32(uid) != acct.UID || uint32(gid) != acct.GID {
		return Account{}, fmt.Errorf("through sudo: SUDO_USER %s is %d:%d on this host, but SUDO_UID/SUDO_GID say %q:%q; ds01 acts only for the account sudo was run by",
			login, acct.UID, acct.GID, getenv("SUDO_UID"), getenv("SUDO_GID"))
	}
	return acct, nil
}

func fromAccount(a Account) Identity {
	return Identity{Login: a.Login, UID: a.UID, GID: a.GID, Groups: a.Groups, Known: true}
}

// override is root acting for the user the flags name.
func override(o Overrides, lookup Lookup) (Identity, error) {
	if o.Login == "" {
		return Identity{}, errors.New("--uid and --gid need --user LOGIN too, to name the account inside the image")
	}
	id := Identity{Login: o.Login, Root: true}
	acct, err := lookup(o.Login)
	switch {
	case err == nil:
		id = fromAccount(acct)
		id.Root = true
	case o.UID == nil || o.GID == nil:
		return Identity{}, fmt.Errorf("--user %s: %w; give --uid and --gid for an account this host does not know", o.Login, err)
	}
	if o.UID != nil && *o.UID != id.UID || o.GID != nil && *o.GID != id.GID {
		// IDs other than the host's: an account the host does not know
		// by these IDs, whose files ds01 cannot touch as its owner.
		id.Known, id.Groups = false, nil
	}
	if o.UID != nil {
		id.UID = *o.UID
	}
	if o.GID != nil {
		id.GID = *o.GID
	}
	return id, nil
}

// CheckUser is the check every command that builds or runs for a user
// makes: root's own images would run everything as root.
func (id Identity) CheckUser() error {
	if id.UID == 0 || id.GID == 0 {
		return fmt.Errorf("ds01 makes images and containers for users, and %s has UID %d, GID %d: as root, name the user with --user LOGIN (and --uid N --gid N for an account this host does not know)", id.Login, id.UID, id.GID)
	}
	return nil
}

// Cred is the user's own credentials, for the file work ds01 does in the
// user's home. An account the host does not know has no files there and
// gets the process's own (the zero Cred).
func (id Identity) Cred() asuser.Cred {
	if !id.Known {
		return asuser.Cred{}
	}
	c := asuser.Cred{UID: id.UID, GID: id.GID}
	for _, g := range id.Groups {
		c.Groups = append(c.Groups, g.GID)
	}
	return c
}

// CallerCred is whose rights a file or directory the caller names on the
// command line is opened with: root's own for root, the user's for anyone
// else (through sudo above all).
func (id Identity) CallerCred() asuser.Cred {
	if id.Root {
		return asuser.Cred{}
	}
	return id.Cred()
}

// ActsForUser reports whether ds01 runs as root for a user who is not
// root-equivalent (through sudo, or root's --user): then whatever that
// user can write is untrusted input to a root process, and what ds01
// hands Docker must not give the user more than their own rights.
func (id Identity) ActsForUser() bool { return os.Geteuid() == 0 && id.UID != 0 }

// Account is the identity as an account for an image, in the groups DS01
// images give every user where the base has them.
func (id Identity) Account() passwd.Account {
	return passwd.Account{Name: id.Name, UID: id.UID, GID: id.GID, Groups: []string{"sudo", "video"}, HostGroups: id.Groups}
}
