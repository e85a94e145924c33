package engine

import (
	"regexp"
	"testing"
)

func TestTempTag(t *testing.T) {
	re := regexp.MustCompile(`^(.*):ds01-loading-[0-9a-f]{12}$`)
	for _, tc := range []struct{ tag, repo string }{
		{"ds01-5/p:latest", "ds01-5/p"},
		{"ds01-packages/abc:latest", "ds01-packages/abc"},
		{"localhost:5000/x/y:v1", "localhost:5000/x/y"},
		{"localhost:5000/x/y", "localhost:5000/x/y"},
	} {
		got := tempTag(tc.tag)
		m := re.FindStringSubmatch(got)
		if m == nil || m[1] != tc.repo {
			t.Errorf("tempTag(%q) = %q; want %s:ds01-loading-<random>", tc.tag, got, tc.repo)
		}
		if again := tempTag(tc.tag); again == got {
			t.Errorf("tempTag(%q) gave %q twice", tc.tag, got)
		}
	}
}
