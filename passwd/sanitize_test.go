package passwd

import (
	"errors"
	"regexp"
	"testing"
)

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ login, want string }{
		// The table of the second seed, row by row; its last row's suffix
		// was illustrative, this one is the MD5 the DS01 scripts compute.
		{"c.fusarbassini@hertie-school.lan", "c-fusarbassini"},
		{"h.baker@hertie-school.lan", "h-baker"},
		{"alice", "alice"},
		{"john.doe", "john-doe"},
		{"christopher.vandenbergenstein@hertie-school.lan", "christopher-vandenbergenstein"},
		{"a.very.long.username.with.many.dots@domain.edu", "a-very-long-username-with-m-9f4c"},
		// The rules one by one.
		{"Alice.Smith", "alice-smith"},
		{"a..b", "a-b"},
		{".-a-.", "a"},
		{"user name+tag", "user-name-tag"},
		{"under_score", "under_score"},
		{"bob@x@y", "bob"},
		{"Zoë", "zo"},
		{"12345", "12345"},
		{"abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz012345"},   // exactly 32: kept
		{"abcdefghijklmnopqrstuvwxyz0123456", "abcdefghijklmnopqrstuvwxyz0-2e34"},  // 33: cut
		{"abcdefghijklmnopqrstuvwxy.z0123456", "abcdefghijklmnopqrstuvwxy-z-ccc4"}, // a "-" inside the cut stays
		{"abcdefghijklmnopqrstuvwxyz.123456", "abcdefghijklmnopqrstuvwxyz-6b9f"},   // trailing '-' of the cut trimmed
	} {
		got, err := Sanitize(tc.login)
		if err != nil || got != tc.want {
			t.Errorf("Sanitize(%q) = %q, %v; want %q", tc.login, got, err, tc.want)
		}
	}
}

func TestSanitizeEmpty(t *testing.T) {
	for _, login := range []string{"", "@domain", "...", "-.-@x", "ÄÖÜ"} {
		got, err := Sanitize(login)
		if !errors.Is(err, ErrEmptyName) {
			t.Errorf("Sanitize(%q) = %q, %v; want ErrEmptyName", login, got, err)
		}
	}
}

var sanitizedRE = regexp.MustCompile(`^[a-z0-9_][a-z0-9_-]{0,31}$`)

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"h.baker@hertie-school.lan", "a.very.long.username.with.many.dots@domain.edu", "", "@", "ÄÖ.ü", "-_-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, login string) {
		got, err := Sanitize(login)
		if err != nil {
			if !errors.Is(err, ErrEmptyName) {
				t.Fatalf("Sanitize(%q): unexpected error %v", login, err)
			}
			return
		}
		if !sanitizedRE.MatchString(got) {
			t.Fatalf("Sanitize(%q) = %q, not a valid name", login, got)
		}
		again, err := Sanitize(got)
		if err != nil || again != got {
			t.Fatalf("Sanitize is not idempotent: %q -> %q -> %q, %v", login, got, again, err)
		}
	})
}
