package passwd

import (
	"strconv"
	"strings"
	"testing"
)

// ParseID reads IDs as glibc's nss_files does (strtoul, cut to 32 bits).
func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"1000", 1000, true},
		{"+4242001", 4242001, true},
		{" 4242001", 4242001, true},
		{"\t+7", 7, true},
		{"-1", 4294967295, true},
		{"4294967296", 0, true}, // strtoul's value, cut to uid_t
		{"99999999999999999999999", 4294967295, true},
		{"", 0, false},
		{"+", 0, false},
		{"12a", 0, false},
		{"0x10", 0, false},
		{"1 ", 0, false},
	} {
		got, ok := ParseID(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseID(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// A base's "+4242001" UID is the user's UID to glibc: the clash check
// sees it, so the image has one owner of the UID, not two.
func TestAddUserSignedUID(t *testing.T) {
	acct := Account{Name: "alice", UID: 4242001, GID: 4242001}
	d := db(basePasswd+"mallory:x:+4242001:4242001::/home/mallory:/bin/bash\n", baseGroup, baseShadow, baseGShadow)
	res, err := d.AddUser(acct)
	if err != nil {
		t.Fatal(err)
	}
	pw := string(d.File(Passwd).Bytes())
	if strings.Contains(pw, "mallory") || len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], `"mallory"`) {
		t.Errorf("mallory kept or unreported:\n%s%v", pw, res.Warnings)
	}
	// A system account behind a sign is still a system account.
	d = db("root:x:0:0::/root:/bin/sh\ndaemon:x:+1:1::/:/bin/false\n", baseGroup, baseShadow, baseGShadow)
	if _, err := d.AddUser(Account{Name: "x", UID: 1, GID: 5000}); err == nil || !strings.Contains(err.Error(), `system account "daemon"`) {
		t.Errorf("UID +1: %v", err)
	}
	// A NIS compat line with the UID.
	d = db(basePasswd+"+nis:x:4242001:4242001::/:/bin/sh\n", baseGroup, baseShadow, baseGShadow)
	if _, err := d.AddUser(acct); err == nil || !strings.Contains(err.Error(), "NIS compat line") {
		t.Errorf("compat line: %v", err)
	}
}

// A base whose passwd has no root (finding 13: a hard link read as an
// empty file) is refused, not given a user and no root.
func TestAddUserNoRoot(t *testing.T) {
	for _, pw := range []string{"", "daemon:x:1:1::/:/bin/false\n", "root:x:+0:0::/root:/bin/sh\n"} {
		d := db(pw, baseGroup, baseShadow, baseGShadow)
		_, err := d.AddUser(hbaker)
		if pw == "root:x:+0:0::/root:/bin/sh\n" {
			if err != nil {
				t.Errorf("root at +0 (glibc's 0): %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "has no root account") {
			t.Errorf("passwd %q: %v", pw, err)
		}
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"0", "+1", "-1", " 42", "4294967296", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := ParseID(s)
		if n, err := strconv.ParseUint(s, 10, 32); err == nil && (!ok || uint64(v) != n) {
			t.Fatalf("ParseID(%q) = %d, %v; strconv says %d", s, v, ok, n)
		}
	})
}
