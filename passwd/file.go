package passwd

import (
	"strings"
)

// Kind names one of the four account databases.
type Kind int

const (
	Passwd Kind = iota
	Group
	Shadow
	GShadow
)

// Kinds lists every database, in the order they are written into a layer.
var Kinds = []Kind{Passwd, Group, Shadow, GShadow}

// Path is where the database lives inside an image, without the leading "/".
func (k Kind) Path() string {
	return [...]string{"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}[k]
}

func (k Kind) String() string { return "/" + k.Path() }

// File is one account database kept line by line. Lines are never
// reinterpreted: comments, blank lines, NIS "+"/"-" lines and entries with an
// unexpected number of fields are kept as they are, so that rendering a File
// nobody changed returns the base's bytes exactly, and a change touches only
// the lines it must.
type File struct {
	Kind Kind
	// lines is the content split on "\n"; the last element is "" when the
	// content ends in a newline, which makes Bytes an exact inverse of Parse.
	lines []string
}

// Parse reads a database. It never fails: odd lines are kept, not rejected,
// because a base image's files are not ours to judge.
func Parse(kind Kind, data []byte) *File {
	return &File{Kind: kind, lines: strings.Split(string(data), "\n")}
}

// Bytes renders the database.
func (f *File) Bytes() []byte { return []byte(strings.Join(f.lines, "\n")) }

// Entry is one account line split into its fields.
type Entry struct {
	Line   int // index of the line in the file
	Fields []string
}

// Name is the entry's first field: the user or group name.
func (e Entry) Name() string { return e.Fields[0] }

// ID is the numeric UID (passwd) or GID (group) of the entry as glibc
// reads it (see ParseID); ok is false when glibc would skip the line.
func (e Entry) ID() (id uint64, ok bool) {
	if len(e.Fields) < 3 {
		return 0, false
	}
	v, ok := ParseID(e.Fields[2])
	return uint64(v), ok
}

// ParseID reads a UID or GID field the way glibc's nss_files does
// (strtoul in base 10, then cut to 32 bits): leading white space, a sign
// ("+4242001" is 4242001, "-1" is 4294967295), digits, nothing after.
// ds01's clash checks must see the account the C library will see, or a
// base could hide a second owner of the user's UID behind a '+'. An
// empty field, or one with no digits, is a line glibc skips.
func ParseID(s string) (uint32, bool) {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	var v uint64
	overflow := false
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (1<<64-1-9)/10 {
			overflow = true
		}
		v = v*10 + uint64(c-'0')
	}
	if overflow {
		v = 1<<64 - 1 // strtoul's ULONG_MAX, whatever the sign
	} else if neg {
		v = -v
	}
	return uint32(v), true
}

// Field returns field i, or "" when the entry is shorter.
func (e Entry) Field(i int) string {
	if i < len(e.Fields) {
		return e.Fields[i]
	}
	return ""
}

func (e Entry) String() string { return strings.Join(e.Fields, ":") }

// isEntry reports whether a line describes an account, as opposed to a blank
// line, a comment, or a NIS compat line ("+", "+name", "-name") that refers
// to accounts held elsewhere.
func isEntry(line string) bool {
	if line == "" {
		return false
	}
	switch line[0] {
	case '#', '+', '-':
		return false
	}
	return true
}

// Entries returns every account line, in file order.
func (f *File) Entries() []Entry {
	var out []Entry
	for i, l := range f.lines {
		if isEntry(l) {
			out = append(out, Entry{Line: i, Fields: strings.Split(l, ":")})
		}
	}
	return out
}

// compat returns the NIS compat lines ("+name:…", "-name:…") that carry
// an ID field, which Entries leaves out.
func (f *File) compat() []Entry {
	var out []Entry
	for i, l := range f.lines {
		if l != "" && (l[0] == '+' || l[0] == '-') {
			if fs := strings.Split(l, ":"); len(fs) >= 3 && fs[2] != "" {
				out = append(out, Entry{Line: i, Fields: fs})
			}
		}
	}
	return out
}

// Lookup returns the first entry with the given name.
func (f *File) Lookup(name string) (Entry, bool) {
	for _, e := range f.Entries() {
		if e.Name() == name {
			return e, true
		}
	}
	return Entry{}, false
}

// Append adds an entry after the last line, keeping the file's final newline
// (and adding one where the base had none, so the new line stands alone).
func (f *File) Append(fields ...string) {
	line := strings.Join(fields, ":")
	if n := len(f.lines); n > 0 && f.lines[n-1] == "" {
		f.lines[n-1] = line
	} else {
		f.lines = append(f.lines, line)
	}
	f.lines = append(f.lines, "")
}

// set rewrites one field of the entry on line i, padding a short entry with
// empty fields rather than losing what it had.
func (f *File) set(i, field int, value string) {
	fs := strings.Split(f.lines[i], ":")
	for len(fs) <= field {
		fs = append(fs, "")
	}
	fs[field] = value
	f.lines[i] = strings.Join(fs, ":")
}

// remove deletes the lines at the given indexes.
func (f *File) remove(idx map[int]bool) {
	if len(idx) == 0 {
		return
	}
	kept := f.lines[:0:0]
	for i, l := range f.lines {
		if !idx[i] {
			kept = append(kept, l)
		}
	}
	f.lines = kept
}

// removeNames deletes every entry with one of the names.
func (f *File) removeNames(names map[string]bool) {
	idx := map[int]bool{}
	for _, e := range f.Entries() {
		if names[e.Name()] {
			idx[e.Line] = true
		}
	}
	f.remove(idx)
}

// members are the comma-separated user lists of group (field 3) and gshadow
// (fields 2, admins, and 3, members).
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// editList rewrites a comma-separated list field of line i with fn.
func (f *File) editList(i, field int, fn func([]string) []string) {
	fs := strings.Split(f.lines[i], ":")
	old := ""
	if field < len(fs) {
		old = fs[field]
	}
	updated := strings.Join(fn(splitList(old)), ",")
	if updated != old {
		f.set(i, field, updated)
	}
}
