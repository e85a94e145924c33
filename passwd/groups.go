package passwd

import (
	"slices"
	"strconv"
)

// HostGroup is a supplementary group of the user on the host (an LDAP
// project group, say), which the image carries so that `id` inside shows
// it and files shared by its GID on bound directories stay readable.
type HostGroup struct {
	Name string // as the host names it; sanitized before use
	GID  uint32
}

// joinHostGroups makes the user a member of each host group with a GID
// of 1000 or more: of the base's group with that GID if it has one
// (whatever its name), else of a new group under the host's name
// (sanitized; with "-GID" added if the base uses the name for another
// GID). System GIDs are left out: in a base they mean other things.
func (db *DB) joinHostGroups(user string, groups []HostGroup, res *Result) {
	gr := db.files[Group]
	for _, hg := range groups {
		if hg.GID < 1000 || hg.GID == 65534 {
			continue
		}
		name, found := "", false
		for _, e := range gr.Entries() {
			if id, ok := e.ID(); ok && id == uint64(hg.GID) {
				name, found = e.Name(), true
				break
			}
		}
		if !found {
			name = db.freeGroupName(hg)
			gr.Append(name, "x", strconv.FormatUint(uint64(hg.GID), 10), "")
			if gs := db.files[GShadow]; gs != nil {
				gs.Append(name, "!", "", "")
			}
		}
		if name == res.PrimaryGroup || slices.Contains(res.Joined, name) {
			continue
		}
		db.addMember(name, user)
		res.Joined = append(res.Joined, name)
	}
}

func (db *DB) freeGroupName(hg HostGroup) string {
	gid := strconv.FormatUint(uint64(hg.GID), 10)
	name, err := Sanitize(hg.Name)
	if err != nil {
		name = "g" + gid
	}
	if _, taken := db.files[Group].Lookup(name); taken {
		name += "-" + gid
	}
	return name
}

// addMember puts user in the member lists of group and its gshadow line.
func (db *DB) addMember(group, user string) {
	add := func(l []string) []string {
		if slices.Contains(l, user) {
			return l
		}
		return append(l, user)
	}
	if e, ok := db.files[Group].Lookup(group); ok {
		db.files[Group].editList(e.Line, 3, add)
	}
	if gs := db.files[GShadow]; gs != nil {
		if ge, ok := gs.Lookup(group); ok {
			gs.editList(ge.Line, 3, add)
		}
	}
}
