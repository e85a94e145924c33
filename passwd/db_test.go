package passwd

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// A Debian bullseye minbase's files, trimmed.
const (
	basePasswd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`
	baseGroup = `root:x:0:
sudo:x:27:
video:x:44:
users:x:100:
nogroup:x:65534:
`
	baseShadow = `root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
`
	baseGShadow = `root:*::
sudo:*::
video:*::
users:*::
nogroup:*::
`
	// Ubuntu 24.04 ships a user of its own at 1000.
	ubuntuPasswd = basePasswd + "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n"
	ubuntuGroup  = `root:x:0:
sudo:x:27:ubuntu
video:x:44:ubuntu
users:x:100:
nogroup:x:65534:
ubuntu:x:1000:
`
	ubuntuShadow  = baseShadow + "ubuntu:!:19000:0:99999:7:::\n"
	ubuntuGShadow = "root:*::\nsudo:*::ubuntu\nvideo:*::ubuntu\nusers:*::\nnogroup:*::\nubuntu:!::\n"
)

func db(passwd, group, shadow, gshadow string) *DB {
	return NewDB(map[Kind][]byte{Passwd: []byte(passwd), Group: []byte(group), Shadow: []byte(shadow), GShadow: []byte(gshadow)})
}

var hbaker = Account{Name: "h-baker", UID: 1722830498, GID: 1722830498, Groups: []string{"sudo", "video"}}

func TestAddUser(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		db                            *DB
		acct                          Account
		passwd, group, shadow, gshadw string
		primary                       string
		warnings                      int
		unchanged                     bool
	}{{
		name:   "new LDAP user",
		db:     db(basePasswd, baseGroup, baseShadow, baseGShadow),
		acct:   hbaker,
		passwd: basePasswd + "h-baker:x:1722830498:1722830498::/home/h-baker:/bin/bash\n",
		group: `root:x:0:
sudo:x:27:h-baker
video:x:44:h-baker
users:x:100:
nogroup:x:65534:
h-baker:x:1722830498:
`,
		shadow:  baseShadow + "h-baker:!:::::::\n",
		gshadw:  "root:*::\nsudo:*::h-baker\nvideo:*::h-baker\nusers:*::\nnogroup:*::\nh-baker:!::\n",
		primary: "h-baker",
	}, {
		name:      "same name and IDs is a no-op",
		db:        db(basePasswd+"h-baker:x:1722830498:1722830498::/home/h-baker:/bin/bash\n", strings.Replace(strings.Replace(baseGroup, "sudo:x:27:", "sudo:x:27:h-baker", 1), "video:x:44:", "video:x:44:h-baker", 1)+"h-baker:x:1722830498:\n", baseShadow+"h-baker:!:::::::\n", "root:*::\nsudo:*::h-baker\nvideo:*::h-baker\nusers:*::\nnogroup:*::\nh-baker:!::\n"),
		acct:      hbaker,
		passwd:    basePasswd + "h-baker:x:1722830498:1722830498::/home/h-baker:/bin/bash\n",
		group:     strings.Replace(strings.Replace(baseGroup, "sudo:x:27:", "sudo:x:27:h-baker", 1), "video:x:44:", "video:x:44:h-baker", 1) + "h-baker:x:1722830498:\n",
		shadow:    baseShadow + "h-baker:!:::::::\n",
		gshadw:    "root:*::\nsudo:*::h-baker\nvideo:*::h-baker\nusers:*::\nnogroup:*::\nh-baker:!::\n",
		primary:   "h-baker",
		unchanged: true,
	}, {
		name:   "ubuntu at 1000 is replaced with a warning",
		db:     db(ubuntuPasswd, ubuntuGroup, ubuntuShadow, ubuntuGShadow),
		acct:   Account{Name: "alice", UID: 1000, GID: 1000, Groups: []string{"sudo", "video"}},
		passwd: basePasswd + "alice:x:1000:1000::/home/alice:/bin/bash\n",
		group: `root:x:0:
sudo:x:27:alice
video:x:44:alice
users:x:100:
nogroup:x:65534:
alice:x:1000:
`,
		shadow:   baseShadow + "alice:!:::::::\n",
		gshadw:   "root:*::\nsudo:*::alice\nvideo:*::alice\nusers:*::\nnogroup:*::\nalice:!::\n",
		primary:  "alice",
		warnings: 2,
	}, {
		name:    "GID of a system group below 1000 reuses it",
		db:      db(basePasswd, baseGroup, baseShadow, baseGShadow),
		acct:    Account{Name: "bob", UID: 20000, GID: 100},
		passwd:  basePasswd + "bob:x:20000:100::/home/bob:/bin/bash\n",
		group:   baseGroup,
		shadow:  baseShadow + "bob:!:::::::\n",
		gshadw:  baseGShadow,
		primary: "users",
	}, {
		name:    "comments, blank, NIS and odd lines are kept; missing final newline mended",
		db:      db("# passwd\nroot:x:0:0:root:/root:/bin/bash\n\n+@netgroup\nodd:line\n-baduser", "root:x:0:\n+\n", "root:*:19000:0:99999:7:::\nodd", "root:*::"),
		acct:    Account{Name: "carol", UID: 5000, GID: 5000, Groups: []string{"sudo"}},
		passwd:  "# passwd\nroot:x:0:0:root:/root:/bin/bash\n\n+@netgroup\nodd:line\n-baduser\ncarol:x:5000:5000::/home/carol:/bin/bash\n",
		group:   "root:x:0:\n+\ncarol:x:5000:\n",
		shadow:  "root:*:19000:0:99999:7:::\nodd\ncarol:!:::::::\n",
		gshadw:  "root:*::\ncarol:!::\n",
		primary: "carol",
	}, {
		name:    "scratch base: files created with root",
		db:      NewDB(nil),
		acct:    Account{Name: "dave", UID: 1722830498, GID: 1722830498, Groups: []string{"sudo", "video"}},
		passwd:  "root:x:0:0:root:/root:/bin/sh\ndave:x:1722830498:1722830498::/home/dave:/bin/bash\n",
		group:   "root:x:0:\ndave:x:1722830498:\n",
		shadow:  "root:*:::::::\ndave:!:::::::\n",
		gshadw:  "root:*::\ndave:!::\n",
		primary: "dave",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.db.AddUser(tc.acct)
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range map[Kind]string{Passwd: tc.passwd, Group: tc.group, Shadow: tc.shadow, GShadow: tc.gshadw} {
				if got := string(tc.db.File(k).Bytes()); got != want {
					t.Errorf("%s:\n got %q\nwant %q", k, got, want)
				}
			}
			if res.PrimaryGroup != tc.primary || len(res.Warnings) != tc.warnings || res.Unchanged != tc.unchanged {
				t.Errorf("result = %+v; want primary %q, %d warnings, unchanged %v", res, tc.primary, tc.warnings, tc.unchanged)
			}
		})
	}
}

func TestAddUserErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		acct Account
		want string
	}{
		{"UID 0", Account{Name: "x", UID: 0, GID: 5000}, "ID 0 is root's"},
		{"GID 0", Account{Name: "x", UID: 5000, GID: 0}, "ID 0 is root's"},
		{"name of a system user", Account{Name: "daemon", UID: 5000, GID: 5000}, `system account "daemon"`},
		{"UID of a system user", Account{Name: "x", UID: 1, GID: 5000}, `system account "daemon"`},
		{"UID of nobody", Account{Name: "x", UID: 65534, GID: 5000}, `system account "nobody"`},
		{"GID of nogroup", Account{Name: "x", UID: 5000, GID: 65534}, `system group "nogroup"`},
		{"name of a system group", Account{Name: "sudo", UID: 5000, GID: 5000}, `system group "sudo"`},
		{"bad name", Account{Name: "Bad:Name", UID: 5000, GID: 5000}, "must match"},
		{"numeric name", Account{Name: "1234", UID: 5000, GID: 5000}, "all digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := db(basePasswd, baseGroup, baseShadow, baseGShadow)
			_, err := d.AddUser(tc.acct)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want one containing %q", err, tc.want)
			}
			for k, want := range map[Kind]string{Passwd: basePasswd, Group: baseGroup, Shadow: baseShadow, GShadow: baseGShadow} {
				if got := string(d.File(k).Bytes()); got != want {
					t.Errorf("%s changed on error: %q", k, got)
				}
			}
		})
	}
	var ce *ConflictError
	_, err := db(basePasswd, baseGroup, baseShadow, baseGShadow).AddUser(Account{Name: "x", UID: 1, GID: 5000})
	if !errors.As(err, &ce) || ce.Kind != Passwd || !strings.HasPrefix(ce.Entry, "daemon:x:1:") {
		t.Errorf("err = %#v; want a *ConflictError naming daemon's passwd entry", err)
	}
	// A scratch base stays a scratch base when the user is refused.
	d := NewDB(nil)
	if _, err := d.AddUser(Account{Name: "root", UID: 5000, GID: 5000}); err == nil || d.File(Passwd) != nil {
		t.Errorf("root on scratch: err %v, passwd %v; want an error and no file", err, d.File(Passwd))
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{basePasswd, ubuntuGroup, baseShadow, "# c\n\n+\nodd", "", "\n\n", "a:b:c"} {
		f.Add(uint8(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		k := Kinds[int(kind)%len(Kinds)]
		file := Parse(k, data)
		if got := file.Bytes(); !bytes.Equal(got, data) {
			t.Fatalf("parse→render changed %q into %q", data, got)
		}
		for _, e := range file.Entries() {
			if e.Name() == "" && len(e.Fields) == 1 {
				t.Fatalf("empty line %d reported as an entry", e.Line)
			}
		}
	})
}

func FuzzAddUser(f *testing.F) {
	f.Add([]byte(basePasswd), []byte(baseGroup), uint32(1722830498), uint32(1722830498))
	f.Add([]byte(ubuntuPasswd), []byte(ubuntuGroup), uint32(1000), uint32(1000))
	f.Fuzz(func(t *testing.T, pw, gr []byte, uid, gid uint32) {
		d := NewDB(map[Kind][]byte{Passwd: pw, Group: gr})
		_, err := d.AddUser(Account{Name: "fuzz", UID: uid, GID: gid, Groups: []string{"sudo"}})
		if err != nil {
			if !bytes.Equal(d.File(Passwd).Bytes(), pw) || !bytes.Equal(d.File(Group).Bytes(), gr) {
				t.Fatal("a refused user changed the files")
			}
			return
		}
		e, ok := d.File(Passwd).Lookup("fuzz")
		if !ok || e.Field(2) == "" {
			t.Fatalf("user missing after AddUser: %q", d.File(Passwd).Bytes())
		}
		// Every base line that is not an entry survives.
		for _, l := range strings.Split(string(pw), "\n") {
			if !isEntry(l) && l != "" && !strings.Contains(string(d.File(Passwd).Bytes()), l) {
				t.Fatalf("line %q lost", l)
			}
		}
	})
}
