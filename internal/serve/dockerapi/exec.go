package dockerapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
)

// execCreate lets the caller exec into an own container as the
// container's user: never privileged, never as root or another user.
// (ds01's users have sudo inside their containers, so this keeps the
// audit log honest rather than guarding the host; the host is guarded by
// how the container was made.)
func (p *Proxy) execCreate(w http.ResponseWriter, u upstreamReq, d decision) decision {
	o, ok := p.ownedContainer(w, u, &d)
	if !ok {
		return d
	}
	var ex container.ExecCreateRequest
	if err := decodeBody(u.r, &ex); err != nil {
		d.rule = RuleBody
		return refuse(w, d, err.Error())
	}
	if ex.Privileged {
		d.rule = RuleExecPriv
		return refuse(w, d, "an exec is never privileged (docker exec --privileged); the container's own capabilities are what ds01 gave it at deploy")
	}
	user, err := execUser(ex.User, o.Config.User, u.who.UID, u.who.GID)
	if err != nil {
		d.rule = RuleExecUser
		return refuse(w, d, err.Error())
	}
	ex.User = user
	out := outbound{path: u.path(o.ID), query: u.r.URL.RawQuery}
	if err := encodeBody(&out, ex); err != nil {
		return failed(w, d, err)
	}
	return p.send(w, u.r, out, d)
}

// execUser is the user an exec runs as: the container's own, which asked
// may be given as it is or as the caller's UID (with the caller's GID).
func execUser(asked, containers string, uid, gid uint32) (string, error) {
	if rootUser(containers) {
		return "", fmt.Errorf("this container runs as root (User %q), which ds01 never deploys: exec into it is for root only; deploy it again with \"ds01 container deploy NAME\"", containers)
	}
	u, g := strconv.FormatUint(uint64(uid), 10), strconv.FormatUint(uint64(gid), 10)
	switch asked {
	case "", containers, u, u + ":" + g:
		if asked == "" {
			return containers, nil
		}
		return asked, nil
	}
	return "", fmt.Errorf("an exec runs as the container's user (%s), not as %q: drop -u (-u 0 and -u root too; sudo inside the container is yours)", containers, asked)
}

func rootUser(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	return name == "" || name == "root" || strings.TrimLeft(name, "0") == ""
}
