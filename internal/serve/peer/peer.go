// Package peer says who is on the other end of a unix socket connection,
// from the kernel alone: SO_PEERCRED at accept, then the host's account
// database (NSS, so LDAP users too) for the login, home and groups.
// Nothing the client sends can change the answer.
package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/passwd"
)

// Cred is what the kernel says of the process that connected: its
// credentials at connect(2) time.
type Cred struct {
	UID, GID uint32
	PID      int32
}

// Peer is the caller of one connection.
type Peer struct {
	Cred
	// Login, Home and Groups come from NSS by UID; Known is false when the
	// host has no account for the UID (then they are empty).
	Login  string
	Home   string
	Groups []passwd.HostGroup // supplementary groups, without GID
	Known  bool
}

// Root reports whether the caller is root, who may do everything.
func (p Peer) Root() bool { return p.UID == 0 }

// Account is the caller as identity's account, for the operations that
// act for a user.
func (p Peer) Account() identity.Account {
	return identity.Account{Login: p.Login, UID: p.UID, GID: p.GID, Groups: p.Groups}
}

// GroupNames are the names of the caller's supplementary groups and of
// its primary group (for policy entries per group).
func (p Peer) GroupNames() []string {
	var names []string
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(p.GID), 10)); err == nil {
		names = append(names, g.Name)
	}
	for _, g := range p.Groups {
		if g.Name != "" {
			names = append(names, g.Name)
		}
	}
	return names
}

// Conn is an accepted connection with the kernel's word on its peer.
type Conn struct {
	*net.UnixConn
	Cred Cred
}

// ReadCred asks the kernel for the peer credentials of c.
func ReadCred(c *net.UnixConn) (Cred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var uc *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, err
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return Cred{UID: uc.Uid, GID: uc.Gid, PID: uc.Pid}, nil
}

// Listener accepts only connections whose peer the kernel names; each
// comes back as a *Conn.
type Listener struct {
	*net.UnixListener
}

// Accept waits for a connection and reads its peer credentials. A
// connection whose credentials cannot be read is closed and skipped: it
// has no one to act for.
func (l Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := ReadCred(c)
		if err != nil {
			c.Close()
			continue
		}
		return &Conn{UnixConn: c, Cred: cred}, nil
	}
}

type ctxKey struct{}

// ErrNoPeer is returned for a request that did not come through a
// Listener: there is no kernel word on who sent it.
var ErrNoPeer = errors.New("the connection has no peer credentials (not accepted through peer.Listener)")

// ConnContext is for http.Server.ConnContext: it puts the connection's
// peer, resolved through NSS, into every request's context.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	pc, ok := c.(*Conn)
	if !ok {
		return ctx
	}
	return WithPeer(ctx, Resolve(pc.Cred))
}

// WithPeer is ctx carrying p.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext is the peer ConnContext put into ctx.
func FromContext(ctx context.Context) (Peer, error) {
	p, ok := ctx.Value(ctxKey{}).(Peer)
	if !ok {
		return Peer{}, ErrNoPeer
	}
	return p, nil
}

// Resolve looks the credentials' UID up in the host's account database.
// An unknown UID is a Peer that is not Known: the kernel's UID still
// holds, only the names are missing.
func Resolve(c Cred) Peer {
	p := Peer{Cred: c}
	u, err := user.LookupId(strconv.FormatUint(uint64(c.UID), 10))
	if err != nil {
		return p
	}
	p.Login, p.Home, p.Known = u.Username, u.HomeDir, true
	ids, err := u.GroupIds()
	if err != nil {
		return p
	}
	for _, s := range ids {
		g, err := strconv.ParseUint(s, 10, 32)
		if err != nil || uint32(g) == c.GID {
			continue
		}
		hg := passwd.HostGroup{GID: uint32(g)}
		if grp, err := user.LookupGroupId(s); err == nil {
			hg.Name = grp.Name
		}
		p.Groups = append(p.Groups, hg)
	}
	return p
}
