package label

import (
	"strings"
	"testing"
)

func TestImageName(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"my-project", "ds01-1722830498/my-project:latest", ""},
		{"my-project:latest", "ds01-1722830498/my-project:latest", ""},
		{"a.b_c", "ds01-1722830498/a.b_c:latest", ""},
		{"p:v2", "", "drop the :v2"},
		{"My-Project", "", "not a valid image name"},
		{"-lead", "", "not a valid image name"},
		{"", "", "not a valid image name"},
		{"a/b", "", "not a valid image name"},
		{strings.Repeat("a", 129), "", "not a valid image name"},
	} {
		got, _, err := ImageName(1722830498, tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v; want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSetupLabels(t *testing.T) {
	for _, tc := range []struct {
		labels   map[string]string
		has      bool
		uid, gid string
	}{
		{map[string]string{"aime.mlc.DS01_HAS_USER_SETUP": "true", "aime.mlc.DS01_USER_ID": "5", "aime.mlc.DS01_GROUP_ID": "6"}, true, "5", "6"},
		{map[string]string{"ds01.has_user_setup": "true", "ds01.user_id": "7", "ds01.group_id": "8"}, true, "7", "8"},
		{map[string]string{"aime.mlc.DS01_HAS_USER_SETUP": "false", "aime.mlc.DS01_USER_ID": "5"}, false, "5", ""},
		{nil, false, "", ""},
	} {
		has, uid, gid := Setup(tc.labels)
		if has != tc.has || uid != tc.uid || gid != tc.gid {
			t.Errorf("%v: %v %q %q", tc.labels, has, uid, gid)
		}
	}
}

func TestProjectOf(t *testing.T) {
	for tag, want := range map[string]string{"ds01-1000/p:latest": "p", "ds01-1000/p": "p", "ds01-1001/p:latest": "", "ds01-1000/p:v2": "", "other/p:latest": ""} {
		got, ok := ProjectOf(1000, tag)
		if got != want && ok || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", tag, got, ok, want)
		}
	}
}
