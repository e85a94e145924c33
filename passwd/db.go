package passwd

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// DB holds the four databases of one image. A nil file is one the base does
// not have.
type DB struct {
	files [4]*File
}

// NewDB builds a DB from the base's files; a kind missing from the map is a
// file the base does not have.
func NewDB(base map[Kind][]byte) *DB {
	db := &DB{}
	for k, data := range base {
		db.files[k] = Parse(k, data)
	}
	return db
}

// File returns one database, or nil when the image has none.
func (db *DB) File(k Kind) *File { return db.files[k] }

// Account is the user ds01 puts into an image.
type Account struct {
	Name  string // already sanitized, see Sanitize
	UID   uint32
	GID   uint32
	GECOS string
	Home  string // default /home/<Name>
	Shell string // default /bin/bash
	// Groups are supplementary groups the user joins where the base has
	// them (ds01 asks for sudo and video); a missing one is skipped.
	Groups []string
	// HostGroups are the user's groups on the host, carried into the
	// image (see joinHostGroups).
	HostGroups []HostGroup
}

// HomeDir is the account's home, defaulted.
func (a Account) HomeDir() string {
	if a.Home != "" {
		return a.Home
	}
	return "/home/" + a.Name
}

func (a Account) shell() string {
	if a.Shell != "" {
		return a.Shell
	}
	return "/bin/bash"
}

// Result says what AddUser did.
type Result struct {
	// PrimaryGroup is the name of the user's primary group: the user's own,
	// or an existing system group with the user's GID (such as "users").
	PrimaryGroup string
	// Joined lists the supplementary groups the user was added to.
	Joined []string
	// Warnings describe base entries that were replaced.
	Warnings []string
	// Unchanged is true when the base already had this exact account.
	Unchanged bool
}

// ConflictError is a clash with an account that must not be replaced.
type ConflictError struct {
	Kind   Kind
	Entry  string
	Reason string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s: %s (entry %q)", e.Kind, e.Reason, e.Entry)
}

var nameRE = regexp.MustCompile(`^[a-z0-9_][a-z0-9_-]{0,31}$`)

// ValidName reports whether name is one Linux tools accept and that is safe
// in a colon-separated file and a sudoers.d file name.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("user name %q must match %s", name, nameRE)
	}
	if _, err := strconv.ParseUint(name, 10, 64); err == nil {
		return fmt.Errorf("user name %q is all digits, which tools would read as a UID", name)
	}
	return nil
}

// system accounts are never replaced: root, the IDs below 1000 that
// Debian and Ubuntu reserve for the system, and nobody/nogroup.
func isSystem(name string, id uint64, ok bool) bool {
	return name == "root" || name == "nobody" || name == "nogroup" || !ok || id < 1000 || id == 65534
}

// AddUser merges the account into the databases. Accounts of the base are
// never dropped except a non-system one that holds the user's name, UID or
// GID under another identity (Ubuntu 24.04 ships "ubuntu" at 1000), which is
// replaced and reported in Warnings. A clash with a system account is a
// *ConflictError. On error the DB is left unchanged.
func (db *DB) AddUser(a Account) (Result, error) {
	saved := db.files
	res, err := db.addUser(a)
	if err == nil {
		before := res.Unchanged
		snap := db.snapshot()
		db.joinHostGroups(a.Name, a.HostGroups, &res)
		res.Unchanged = before && slices.Equal(snap, db.snapshot())
	}
	if err != nil {
		// Existing files are only edited once every check has passed; what
		// may have happened before is the creation of missing files.
		db.files = saved
	}
	return res, err
}

func (db *DB) addUser(a Account) (Result, error) {
	if err := ValidName(a.Name); err != nil {
		return Result{}, err
	}
	if a.UID == 0 || a.GID == 0 {
		return Result{}, fmt.Errorf("UID %d / GID %d: ID 0 is root's; ds01 never gives it to a user", a.UID, a.GID)
	}
	before := db.snapshot()
	if pw := db.files[Passwd]; pw != nil && !hasRoot(pw) {
		// A base with a passwd and no root (a hard link read as an empty
		// file gave one) makes an image whose sudo says "unknown user root".
		return Result{}, fmt.Errorf("the base's /etc/passwd has no root account (UID 0): sudo, su and login inside would fail; ds01 builds only on a base whose /etc/passwd has a line root:x:0:0:…")
	}
	db.startMissing()

	var res Result
	pw, gr := db.files[Passwd], db.files[Group]

	// Decide everything before changing anything, so an error leaves the
	// DB as it was.
	oldUsers, exact, err := db.clashingUsers(a, &res)
	if err != nil {
		return Result{}, err
	}
	primary, oldGroups, err := db.primaryGroup(a, &res)
	if err != nil {
		return Result{}, err
	}
	res.PrimaryGroup = primary
	newGroup := primary == ""
	if newGroup {
		res.PrimaryGroup = a.Name
	}

	// Apply.
	pw.removeNames(oldUsers)
	gr.removeNames(oldGroups)
	for _, k := range []Kind{Shadow, GShadow} {
		if f := db.files[k]; f != nil {
			if k == Shadow {
				f.removeNames(oldUsers)
			} else {
				f.removeNames(oldGroups)
			}
		}
	}
	if len(oldUsers) > 0 {
		drop := func(l []string) []string {
			return slices.DeleteFunc(l, func(m string) bool { return oldUsers[m] })
		}
		for _, e := range gr.Entries() {
			gr.editList(e.Line, 3, drop)
		}
		if gs := db.files[GShadow]; gs != nil {
			for _, e := range gs.Entries() {
				gs.editList(e.Line, 2, drop)
				gs.editList(e.Line, 3, drop)
			}
		}
	}

	if !exact {
		pw.Append(a.Name, "x", strconv.FormatUint(uint64(a.UID), 10), strconv.FormatUint(uint64(a.GID), 10), a.GECOS, a.HomeDir(), a.shell())
	}
	if sh := db.files[Shadow]; sh != nil {
		if _, ok := sh.Lookup(a.Name); !ok {
			// "!": no password login; sudo is NOPASSWD. Aging fields are
			// left empty rather than set to today, so the layer does not
			// depend on the clock.
			sh.Append(a.Name, "!", "", "", "", "", "", "", "")
		}
	}
	if newGroup {
		gr.Append(a.Name, "x", strconv.FormatUint(uint64(a.GID), 10), "")
	}
	if gs := db.files[GShadow]; gs != nil {
		if _, ok := gs.Lookup(res.PrimaryGroup); !ok && newGroup {
			gs.Append(a.Name, "!", "", "")
		}
	}

	for _, g := range a.Groups {
		if _, ok := gr.Lookup(g); !ok || g == res.PrimaryGroup {
			continue
		}
		db.addMember(g, a.Name)
		res.Joined = append(res.Joined, g)
	}
	res.Unchanged = slices.Equal(before, db.snapshot())
	return res, nil
}

// compatClash: glibc's files module reads a "+name:x:UID:…" line as an
// account too; ds01 keeps such lines, so it must not add a second owner
// startMissing gives a scratch or distroless base the files the way a
// minimal distribution would, with root, so tools inside still resolve
// UID 0.
func (db *DB) startMissing() {
	if db.files[Passwd] == nil {
		db.files[Passwd] = Parse(Passwd, []byte("root:x:0:0:root:/root:/bin/sh\n"))
		if db.files[Shadow] == nil {
			db.files[Shadow] = Parse(Shadow, []byte("root:*:::::::\n"))
		}
	}
	if db.files[Group] == nil {
		db.files[Group] = Parse(Group, []byte("root:x:0:\n"))
		if db.files[GShadow] == nil {
			db.files[GShadow] = Parse(GShadow, []byte("root:*::\n"))
		}
	}
}

// clashingUsers decides what happens to the base's accounts that hold
// the user's name or UID: the same account is kept (exact), a non-system
// one under another identity is replaced with a warning, a system one is
// an error.
func (db *DB) clashingUsers(a Account, res *Result) (old map[string]bool, exact bool, err error) {
	old = map[string]bool{}
	for _, e := range db.files[Passwd].Entries() {
		id, ok := e.ID()
		if e.Name() != a.Name && (!ok || id != uint64(a.UID)) {
			continue
		}
		gid, gok := ParseID(e.Field(3))
		if e.Name() == a.Name && ok && id == uint64(a.UID) && gok && gid == a.GID && !exact {
			exact = true
			continue
		}
		if isSystem(e.Name(), id, ok) {
			return nil, false, &ConflictError{Passwd, e.String(), fmt.Sprintf("user %q (UID %d) clashes with system account %q", a.Name, a.UID, e.Name())}
		}
		old[e.Name()] = true
		res.Warnings = append(res.Warnings, fmt.Sprintf("replacing user %q (UID %s, GID %s) of the base image, which holds the name or UID of %q (UID %d)", e.Name(), e.Field(2), e.Field(3), a.Name, a.UID))
	}
	if err := compatClash(db.files[Passwd], a); err != nil {
		return nil, false, err
	}
	return old, exact, nil
}

// primaryGroup decides the user's primary group: an existing system group
// with the user's GID (e.g. "users", 100), which the host means too; the
// user's own group if the base has it exactly; else a new one, the base's
// non-system groups holding its name or GID replaced with a warning.
func (db *DB) primaryGroup(a Account, res *Result) (primary string, old map[string]bool, err error) {
	gr := db.files[Group]
	old = map[string]bool{}
	if a.GID < 1000 {
		for _, e := range gr.Entries() {
			if id, ok := e.ID(); ok && id == uint64(a.GID) {
				return e.Name(), old, nil
			}
		}
	}
	for _, e := range gr.Entries() {
		id, ok := e.ID()
		if e.Name() != a.Name && (!ok || id != uint64(a.GID)) {
			continue
		}
		if e.Name() == a.Name && ok && id == uint64(a.GID) && primary == "" {
			primary = a.Name
			continue
		}
		if isSystem(e.Name(), id, ok) {
			return "", nil, &ConflictError{Group, e.String(), fmt.Sprintf("group %q (GID %d) clashes with system group %q", a.Name, a.GID, e.Name())}
		}
		old[e.Name()] = true
		res.Warnings = append(res.Warnings, fmt.Sprintf("replacing group %q (GID %s) of the base image, which holds the name or GID of %q (GID %d)", e.Name(), e.Field(2), a.Name, a.GID))
	}
	return primary, old, nil
}

// of their UID.
func compatClash(pw *File, a Account) error {
	for _, e := range pw.compat() {
		if id, ok := e.ID(); ok && id == uint64(a.UID) {
			return &ConflictError{Passwd, e.String(), fmt.Sprintf("user %q (UID %d) clashes with the NIS compat line %q, which the C library reads as an account with that UID", a.Name, a.UID, e.Name())}
		}
	}
	return nil
}

func hasRoot(pw *File) bool {
	for _, e := range pw.Entries() {
		if id, ok := e.ID(); ok && id == 0 && e.Name() == "root" {
			return true
		}
	}
	return false
}

func (db *DB) snapshot() []string {
	out := make([]string, len(db.files))
	for i, f := range db.files {
		if f != nil {
			out[i] = string(f.Bytes())
		}
	}
	return out
}
