// Package passwd reads, merges and writes the account databases of an image
// (/etc/passwd, /etc/group, /etc/shadow, /etc/gshadow) and turns LDAP logins
// into Linux user names. It does no I/O: callers hand it file contents and
// take back file contents.
package passwd

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen is the longest user name Linux tools (useradd, systemd slices)
// accept.
const MaxNameLen = 32

// ErrEmptyName is returned when a login has nothing left after sanitization.
var ErrEmptyName = errors.New("login sanitizes to an empty user name")

// Sanitize turns a login such as "h.baker@hertie-school.lan" into the user
// name used inside images, for the sudoers file and for the systemd slice:
// "h-baker". It is the algorithm of the DS01 scripts (username_utils.py and
// username-utils.sh), so names stay compatible with images and slices they
// made: the domain is dropped, anything outside [a-z0-9_-] becomes "-", runs
// of "-" collapse, and names longer than 32 characters are cut to 27 and get
// "-" plus the first four hex digits of the MD5 of the original login, so
// that two long logins sharing a prefix do not collide.
func Sanitize(login string) (string, error) {
	local, _, _ := strings.Cut(login, "@")
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(local) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
			dash = false
			continue
		}
		// '.', '-' and every other character become a single '-'.
		if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" {
		return "", fmt.Errorf("%w: %q has no letters, digits or '_' before any '@'", ErrEmptyName, login)
	}
	if len(name) > MaxNameLen {
		sum := md5.Sum([]byte(login))
		name = strings.TrimRight(name[:27], "-") + "-" + hex.EncodeToString(sum[:])[:4]
	}
	return name, nil
}
