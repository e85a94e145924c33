package deploy

import (
	"slices"
	"testing"
)

func TestParseGPUs(t *testing.T) {
	for _, tc := range []struct {
		in    string
		count int
		ids   []string
		err   bool
	}{
		{"all", -1, nil, false},
		{"2", 2, nil, false},
		{"device=0,2", 0, []string{"0", "2"}, false},
		{"device=GPU-1a2b", 0, []string{"GPU-1a2b"}, false},
		{"device=0+2", 0, []string{"0", "2"}, false},
		{"device=0,0", 0, nil, true},
		{"0", 0, nil, true},
		{"-1", 0, nil, true},
		{"device=", 0, nil, true},
		{"device=0,,1", 0, nil, true},
		{"many", 0, nil, true},
	} {
		dr, err := ParseGPUs(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil || dr.Count != tc.count || !slices.Equal(dr.DeviceIDs, tc.ids) || dr.Driver != "nvidia" || dr.Capabilities[0][0] != "gpu" {
			t.Errorf("%q: %+v, %v", tc.in, dr, err)
		}
	}
}
