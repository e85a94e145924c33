package binds

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func testMounts(t *testing.T) []Mount {
	t.Helper()
	data, err := os.ReadFile("testdata/mountinfo.txt")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMountinfo(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseMountinfo(t *testing.T) {
	m := testMounts(t)
	if len(m) != 9 {
		t.Fatalf("%d mounts, want 9", len(m))
	}
	if got := m[6].Point; got != "/tmp/with space" {
		t.Errorf("escaped mount point read as %q", got)
	}
	if !m[2].Has("nosuid") || !m[2].Has("nodev") || m[1].Has("nosuid") {
		t.Errorf("options: %v %v", m[2].Options, m[1].Options)
	}
	if m[3].Root != "/alice/shared" || m[3].Major != 254 || m[3].Minor != 16 || m[3].FSType != "ext4" {
		t.Errorf("bind mount read as %+v", m[3])
	}
	for _, bad := range []string{"1 2 3", "x 27 254:0 / / rw - ext4 /dev/vda rw", "1 27 254 / / rw - ext4 a rw", "1 27 254:0 / rel rw - ext4 a rw", `1 27 254:0 /\04 / rw - ext4 a rw`} {
		if _, err := ParseMountinfo([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestExposures(t *testing.T) {
	m := testMounts(t)
	for _, tc := range []struct {
		dir  string
		want []string // mount points that expose it
	}{
		{"/home/carol/workspace/p", nil},
		// alice's shared directory is bound again at /srv/shared without
		// nosuid: a setuid file in it works there.
		{"/home/alice/shared/x", []string{"/srv/shared"}},
		{"/home/alice", []string{"/srv/shared"}},
		// bob's home carries a tmpfs without nosuid beneath it.
		{"/home/bob", []string{"/home/bob/scratch"}},
		{"/root/ws", []string{"/"}},
		{"/tmp/with space/u", nil},
		{"/data/other", nil},
		{"/data/projects/a", []string{"/data/projects"}},
		{"/data", []string{"/data/projects"}},
	} {
		ex, err := Exposures(m, tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ex {
			got = append(got, e.Mount.Point)
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: exposed through %v, want %v", tc.dir, got, tc.want)
		}
	}
}

func TestRefusalNamesRuleAndFix(t *testing.T) {
	ex, _ := Exposures(testMounts(t), "/root/ws")
	err := refusal(ex)
	if !errors.Is(err, ErrSetuid) {
		t.Fatal(err)
	}
	for _, want := range []string{"the setuid rule", "/root/ws", "/dev/vda (ext4) at / without nosuid,nodev", "mount that filesystem nosuid,nodev", "--accept-setuid-risk"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, err)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	data, _ := os.ReadFile("testdata/mountinfo.txt")
	f.Add(data)
	f.Add([]byte(`1 2 0:1 /a\134b /x\012y rw - t s o`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := ParseMountinfo(data)
		if err != nil {
			return
		}
		for _, m := range ms {
			if !strings.HasPrefix(m.Point, "/") {
				t.Fatalf("relative path accepted: %+v", m)
			}
			if _, err := Exposures(ms, m.Point); err != nil {
				t.Fatalf("a mount point no mount reaches: %v", err)
			}
		}
	})
}
