package layers

import (
	"archive/tar"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/ds01/ds01/passwd"
)

// UserWant is what UserLayer reads from the base: the account databases,
// the skeleton of a home, and the attributes of every directory and file
// the layer touches, so that it can keep them.
var UserWant = Want{
	Files:   []string{"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"},
	Headers: []string{"etc", "etc/sudoers.d", "home", "var", "var/log", "var/log/lastlog", "var/log/faillog", "workspace"},
	Trees:   []string{"etc/skel"},
}

// UserLayer is the result of UserLayer: the entries of the layer and what
// merging the account did.
type UserResult struct {
	Entries []Entry
	passwd.Result
}

// Databases reads the account databases out of the base, following
// symlinks inside the root. A database the base lacks is left out.
func Databases(base *Files) (map[passwd.Kind][]byte, error) {
	out := map[passwd.Kind][]byte{}
	for _, k := range passwd.Kinds {
		f, resolved, ok, err := base.Resolve(k.Path())
		if err != nil {
			return nil, fmt.Errorf("reading base %s: %w", k, err)
		}
		if !ok {
			if _, present := base.Get(k.Path()); present {
				// A link to nothing ds01 could read (a chain too long, a
				// target outside what was copied): not a missing file.
				return nil, fmt.Errorf("reading base %s: it is a symbolic link that leads to no file (/%s)", k, resolved)
			}
			continue
		}
		if f.Header.Typeflag != tar.TypeReg && f.Header.Typeflag != tar.TypeLink {
			return nil, fmt.Errorf("reading base %s: /%s is not a regular file", k, resolved)
		}
		out[k] = f.Data
	}
	return out, nil
}

// UserLayer computes the layer that puts the account into the base: merged
// account databases, a sudoers.d entry, a home made from /etc/skel with
// ~/.local/bin on PATH, /workspace, and empty lastlog and faillog (the
// files useradd makes sparse and Docker then stores in full, hundreds of GB
// for an LDAP UID). Files ds01 writes get mtime t; directories the base
// already has keep its mode, owner and mtime.
func UserLayer(base *Files, acct passwd.Account, t time.Time) (UserResult, error) {
	dbs, err := Databases(base)
	if err != nil {
		return UserResult{}, err
	}
	db := passwd.NewDB(dbs)
	res, err := db.AddUser(acct)
	if err != nil {
		return UserResult{}, fmt.Errorf("adding %s to the base's accounts: %w", acct.Name, err)
	}
	uid, gid := int(acct.UID), int(acct.GID)
	home := strings.TrimPrefix(path.Clean(acct.HomeDir()), "/")
	if home == "" || strings.HasPrefix(home, "..") {
		return UserResult{}, fmt.Errorf("home directory %q is not a path below /", acct.HomeDir())
	}

	l := &builder{base: base, t: t, byPath: map[string]int{}}
	for _, k := range passwd.Kinds {
		f := db.File(k)
		if f == nil {
			continue
		}
		mode, fuid, fgid := int64(0o644), 0, 0
		if k == passwd.Shadow || k == passwd.GShadow {
			mode = 0o640
		}
		if bf, _, ok, _ := base.Resolve(k.Path()); ok {
			mode, fuid, fgid = bf.Header.Mode&0o7777, bf.Header.Uid, bf.Header.Gid
		}
		if err := l.file(k.Path(), mode, fuid, fgid, f.Bytes()); err != nil {
			return UserResult{}, err
		}
	}
	sudoers := "etc/sudoers.d/ds01-" + acct.Name
	if err := l.file(sudoers, 0o440, 0, 0, []byte(acct.Name+" ALL=(ALL) NOPASSWD:ALL\n")); err != nil {
		return UserResult{}, err
	}

	// The home: /etc/skel copied in, owned by the user.
	if err := l.dir(home, 0o700, uid, gid); err != nil {
		return UserResult{}, err
	}
	skel, err := l.skel(home, uid, gid)
	if err != nil {
		return UserResult{}, err
	}
	var skelBashrc []byte
	bashrcMode := int64(0o644)
	if f, ok := skel[".bashrc"]; ok && (f.Header.Typeflag == tar.TypeReg || f.Header.Typeflag == tar.TypeLink) {
		skelBashrc, bashrcMode = f.Data, f.Header.Mode&0o7777
	}
	if err := l.file(path.Join(home, ".bashrc"), bashrcMode, uid, gid, Bashrc(skelBashrc, "/"+home, loginAddsLocalBin(skel))); err != nil {
		return UserResult{}, err
	}
	if _, ok := skel[".profile"]; !ok {
		// bash -l reads ~/.profile, not ~/.bashrc; Debian's and Ubuntu's
		// skeletons bridge the two, a bare base has no skeleton at all.
		if err := l.file(path.Join(home, ".profile"), 0o644, uid, gid, []byte(profile)); err != nil {
			return UserResult{}, err
		}
	}
	for _, d := range []string{".local", ".local/bin"} {
		if err := l.dir(path.Join(home, d), 0o755, uid, gid); err != nil {
			return UserResult{}, err
		}
	}

	// /workspace is the user's, whatever mode the base gave it.
	wsMode := int64(0o755)
	if f, ok := base.Get("workspace"); ok && f.IsDir() {
		wsMode = f.Header.Mode & 0o7777
	}
	if err := l.add(Entry{Path: "workspace", Type: tar.TypeDir, Mode: wsMode, UID: uid, GID: gid, ModTime: t}); err != nil {
		return UserResult{}, err
	}

	// lastlog and faillog: empty, with the base's mode and owner.
	for _, p := range []string{"var/log/lastlog", "var/log/faillog"} {
		mode, fuid, fgid := int64(0o644), 0, 0
		if f, ok := base.Get(p); ok {
			mode, fuid, fgid = f.Header.Mode&0o7777, f.Header.Uid, f.Header.Gid
		}
		if err := l.file(p, mode, fuid, fgid, nil); err != nil {
			return UserResult{}, err
		}
	}
	return UserResult{Entries: l.entries, Result: res}, nil
}

// skel copies /etc/skel into the home, owned by the user, and returns
// the skeleton's entries by path below it.
func (l *builder) skel(home string, uid, gid int) (map[string]*File, error) {
	skel := map[string]*File{}
	for _, f := range l.base.Below("etc/skel") {
		skel[strings.TrimPrefix(f.Header.Name, "etc/skel/")] = f
	}
	for rel, f := range skel {
		if rel == ".bashrc" || strings.HasPrefix(rel, ".bashrc/") {
			// ds01 writes .bashrc itself, from the skeleton's when that
			// is a regular file; a .bashrc that is a directory (or a
			// link, a FIFO) is left out with what lies under it.
			continue
		}
		p := path.Join(home, rel)
		mode := f.Header.Mode & 0o7777
		var err error
		switch f.Header.Typeflag {
		case tar.TypeDir:
			err = l.dir(p, mode, uid, gid)
		case tar.TypeSymlink:
			err = l.add(Entry{Path: p, Type: tar.TypeSymlink, Mode: 0o777, UID: uid, GID: gid, ModTime: l.t, Linkname: f.Header.Linkname})
		case tar.TypeReg, tar.TypeLink:
			err = l.file(p, mode, uid, gid, f.Data)
		}
		// FIFOs, devices and sockets of a skeleton are left out.
		if err != nil {
			return nil, err
		}
	}
	return skel, nil
}

// The DS01 lines of .bashrc. The environment goes first, because Debian's
// and Ubuntu's .bashrc return early in non-interactive shells (bash -lc …);
// the prompt goes last, because the same files set PS1 themselves.
const (
	bashrcHead = `# >>> ds01 >>> (written by ds01 image create)
export HOME=%s
%s# <<< ds01 <<<
`
	addLocalBin = `case ":$PATH:" in *":$HOME/.local/bin:"*) ;; *) export PATH="$HOME/.local/bin:$PATH" ;; esac
`
	// In a login shell the skeleton's ~/.profile adds ~/.local/bin itself
	// after this file, whether or not it is there already: leave it to
	// that, once.
	addLocalBinUnlessLogin = `if [ -n "$BASH_VERSION" ] && shopt -q login_shell; then
	p=":$PATH:"; while [[ $p == *":$HOME/.local/bin:"* ]]; do p=${p/":$HOME/.local/bin:"/:}; done; p=${p#:}; PATH=${p%:}; unset p
else
	` + addLocalBin + `fi
`
	bashrcTail = `# >>> ds01 >>>
export PS1='[\h] \u@ds01:\w\$ '
# <<< ds01 <<<
`
	profile = `# ~/.profile: written by ds01 for login shells.
if [ -n "$BASH_VERSION" ] && [ -f "$HOME/.bashrc" ]; then
	. "$HOME/.bashrc"
fi
`
)

// Bashrc is the skeleton's .bashrc with the DS01 lines around it. When
// loginAdds, a login shell's profile puts ~/.local/bin on PATH after
// reading .bashrc (Debian's and Ubuntu's do), and .bashrc leaves it to it.
func Bashrc(skel []byte, home string, loginAdds bool) []byte {
	var b strings.Builder
	add := addLocalBin
	if loginAdds {
		add = addLocalBinUnlessLogin
	}
	fmt.Fprintf(&b, bashrcHead, home, add)
	b.Write(skel)
	if len(skel) > 0 && !strings.HasSuffix(string(skel), "\n") {
		b.WriteByte('\n')
	}
	b.WriteString(bashrcTail)
	return []byte(b.String())
}

// loginAddsLocalBin reports whether the login script bash reads from the
// skeleton (the first of .bash_profile, .bash_login, .profile) reads
// .bashrc and then puts ~/.local/bin on PATH.
func loginAddsLocalBin(skel map[string]*File) bool {
	for _, name := range []string{".bash_profile", ".bash_login", ".profile"} {
		f, ok := skel[name]
		if !ok || f.Header.Typeflag != tar.TypeReg {
			continue
		}
		s := string(f.Data)
		rc, bin := strings.Index(s, ".bashrc"), strings.Index(s, "$HOME/.local/bin:$PATH")
		return rc >= 0 && bin > rc
	}
	return false
}

// builder collects entries and adds the parent directories each one needs,
// copying the base's attributes where the base has the directory.
type builder struct {
	base    *Files
	t       time.Time
	entries []Entry
	byPath  map[string]int
}

func (l *builder) add(e Entry) error {
	if err := l.parents(e.Path); err != nil {
		return err
	}
	if i, ok := l.byPath[e.Path]; ok {
		l.entries[i] = e
		return nil
	}
	l.byPath[e.Path] = len(l.entries)
	l.entries = append(l.entries, e)
	return nil
}

func (l *builder) file(p string, mode int64, uid, gid int, data []byte) error {
	return l.add(Entry{Path: p, Type: tar.TypeReg, Mode: mode, UID: uid, GID: gid, ModTime: l.t, Data: data})
}

func (l *builder) dir(p string, mode int64, uid, gid int) error {
	return l.add(Entry{Path: p, Type: tar.TypeDir, Mode: mode, UID: uid, GID: gid, ModTime: l.t})
}

// errNotDir is returned when the base has a non-directory where the layer
// needs a directory (a /home that is a symlink, say): writing through it
// would put files somewhere nobody expects.
var errNotDir = errors.New("is not a directory in the base image")

func (l *builder) parents(p string) error {
	d := path.Dir(p)
	if d == "." {
		return nil
	}
	if _, ok := l.byPath[d]; ok {
		return nil
	}
	if err := l.parents(d); err != nil {
		return err
	}
	e := Entry{Path: d, Type: tar.TypeDir, Mode: 0o755, ModTime: l.t}
	if f, ok := l.base.Get(d); ok {
		if !f.IsDir() {
			return fmt.Errorf("/%s %w", d, errNotDir)
		}
		e.Mode, e.UID, e.GID, e.ModTime = f.Header.Mode&0o7777, f.Header.Uid, f.Header.Gid, f.Header.ModTime
	}
	l.byPath[d] = len(l.entries)
	l.entries = append(l.entries, e)
	return nil
}

// AddHomeFiles puts files into the user's home in a user layer: paths
// relative to the home, owned by the user, with the directories on the way
// made the user's too (0755) where the layer does not have them yet.
func AddHomeFiles(entries []Entry, acct passwd.Account, t time.Time, files map[string][]byte) ([]Entry, error) {
	home := strings.TrimPrefix(path.Clean(acct.HomeDir()), "/")
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Path] = true
	}
	uid, gid := int(acct.UID), int(acct.GID)
	for rel, data := range files {
		p := path.Join(home, path.Clean("/" + rel)[1:])
		if have[p] {
			return nil, fmt.Errorf("%s is in the user layer already", p)
		}
		for d := path.Dir(p); d != home && d != "." && !have[d]; d = path.Dir(d) {
			entries = append(entries, Entry{Path: d, Type: tar.TypeDir, Mode: 0o755, UID: uid, GID: gid, ModTime: t})
			have[d] = true
		}
		entries = append(entries, Entry{Path: p, Type: tar.TypeReg, Mode: 0o644, UID: uid, GID: gid, ModTime: t, Data: data})
		have[p] = true
	}
	return entries, nil
}
