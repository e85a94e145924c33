// Package identity decides whom a ds01 command acts for: the calling user,
// the user behind sudo, or, for root only, the user named by --user, --uid
// and --gid.
package identity

import (
	"errors"
	"fmt"
	"strconv"

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

// Lookup finds a login's UID and GID on the host (through NSS, so LDAP
// users are found too).
type Lookup func(login string) (uid, gid uint32, err error)

// Identity is the user a command acts for.
type Identity struct {
	Login string // as the host knows it: h.baker@hertie-school.lan
	Name  string // sanitized, as images know it: h-baker
	UID   uint32
	GID   uint32
	// Privileged is true when the caller is root (directly or by sudo),
	// who may act for, and see, other users.
	Privileged bool
}

// ErrNotRoot is returned when a non-root caller uses the override flags.
var ErrNotRoot = errors.New("--user, --uid and --gid act for another user and are for root only")

// Resolve applies the rules: root's overrides win; through sudo the
// caller is SUDO_USER; otherwise the caller is the process's own user.
func Resolve(p Process, o Overrides, lookup Lookup) (Identity, error) {
	id := Identity{Login: p.Login, UID: p.UID, GID: p.GID, Privileged: p.UID == 0}
	if p.UID == 0 && p.Getenv != nil {
		if su := p.Getenv("SUDO_USER"); su != "" && su != "root" {
			uid, err1 := strconv.ParseUint(p.Getenv("SUDO_UID"), 10, 32)
			gid, err2 := strconv.ParseUint(p.Getenv("SUDO_GID"), 10, 32)
			if err1 == nil && err2 == nil {
				id.Login, id.UID, id.GID = su, uint32(uid), uint32(gid)
			}
		}
	}
	if o.any() {
		if !id.Privileged {
			return Identity{}, fmt.Errorf("%w; you are %s (UID %d)", ErrNotRoot, p.Login, p.UID)
		}
		if o.Login == "" {
			return Identity{}, errors.New("--uid and --gid need --user LOGIN too, to name the account inside the image")
		}
		id.Login = o.Login
		if o.UID == nil || o.GID == nil {
			uid, gid, err := lookup(o.Login)
			if err != nil {
				return Identity{}, fmt.Errorf("--user %s: %w; give --uid and --gid for an account this host does not know", o.Login, err)
			}
			id.UID, id.GID = uid, gid
		}
		if o.UID != nil {
			id.UID = *o.UID
		}
		if o.GID != nil {
			id.GID = *o.GID
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

// CheckUser is the check every command that builds or runs for a user
// makes: root's own images would run everything as root.
func (id Identity) CheckUser() error {
	if id.UID == 0 || id.GID == 0 {
		return fmt.Errorf("ds01 makes images and containers for users, and %s has UID %d, GID %d: as root, name the user with --user LOGIN (and --uid N --gid N for an account this host does not know)", id.Login, id.UID, id.GID)
	}
	return nil
}

// Account is the identity as an account for an image, in the groups DS01
// images give every user where the base has them.
func (id Identity) Account() passwd.Account {
	return passwd.Account{Name: id.Name, UID: id.UID, GID: id.GID, Groups: []string{"sudo", "video"}}
}
