package gpu

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/assemble/label"
)

func TestLabelsRoundTrip(t *testing.T) {
	for _, refs := range [][]Ref{
		nil,
		{{"0", "GPU-dfcf7acb-acaa-34f7-7259-867f8f57fb56"}},
		{{"0:1", "MIG-b61c6dd0-0042-3fa5-de13-3c404f999abe"}, {"3", "GPU-078e4c92-c71f-b556-339b-5749d4f7041b"}},
		{{"0:1", "MIG-GPU-e91edf3b-b297-37c1-a2a7-7601c3238fa2/2/0"}},
	} {
		m := EncodeLabels(refs)
		for k, v := range m {
			if strings.Contains(v, ",") || label.Escape(v) != v {
				t.Errorf("%s=%q would not survive mlc list", k, v)
			}
		}
		got, err := DecodeLabels(m)
		if err != nil || !slices.Equal(got, refs) {
			t.Errorf("%v: %v → %v, %v", refs, m, got, err)
		}
	}
}

func TestDecodeLabelsStrict(t *testing.T) {
	const u = "GPU-dfcf7acb-acaa-34f7-7259-867f8f57fb56"
	for _, tc := range []struct {
		uuids, indices string
		err            string
	}{
		{u, "0", ""},
		{u + "+" + u, "0+1", "twice"},
		{u + "+GPU-2", "0+0", "twice"},
		{u, "0+1", "2 indices"},
		{u, "00", "not an index"},
		{u, "0:", "not an index"},
		{u + ",GPU-2", "0,1", "not an index"},
		{u + " GPU-2", "0", "not an index"},
		{"GPU-", "0", "not an index"},
		{"", "", "not an index"},
		{u + "+", "0+", "not an index"},
		{"-", "0", "not an index"},
		{strings.Repeat("GPU-1+", maxRefs) + "GPU-1", strings.Repeat("0+", maxRefs) + "0", "at most"},
	} {
		_, err := DecodeLabels(map[string]string{LabelUUIDs: tc.uuids, LabelIndices: tc.indices})
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q %q: %v, want %q", tc.uuids, tc.indices, err, tc.err)
		}
	}
	if _, err := DecodeLabels(map[string]string{"x": "y"}); !errors.Is(err, ErrNoLabels) {
		t.Errorf("no labels: %v", err)
	}
	if _, err := DecodeLabels(map[string]string{LabelUUIDs: u}); err == nil || errors.Is(err, ErrNoLabels) {
		t.Errorf("one label: %v", err)
	}
}

func FuzzDecodeLabels(f *testing.F) {
	f.Add("GPU-dfcf7acb-acaa-34f7-7259-867f8f57fb56+MIG-1", "0+1:0")
	f.Add("-", "-")
	f.Add("GPU-1,GPU-2", "0,1")
	f.Fuzz(func(t *testing.T, uuids, indices string) {
		refs, err := DecodeLabels(map[string]string{LabelUUIDs: uuids, LabelIndices: indices})
		if err != nil {
			return
		}
		m := EncodeLabels(refs)
		again, err := DecodeLabels(m)
		if err != nil || !slices.Equal(again, refs) {
			t.Fatalf("%q %q → %v does not round-trip: %v %v", uuids, indices, refs, again, err)
		}
		if len(refs) > 0 && (m[LabelUUIDs] != uuids || m[LabelIndices] != indices) {
			t.Fatalf("%q %q decoded from a non-canonical form", uuids, indices)
		}
		for _, v := range m {
			if strings.ContainsAny(v, ", ") {
				t.Fatalf("value %q", v)
			}
		}
	})
}

// ds01Container is a container as deploy labels it, holding refs.
func ds01Container(id, name, login string, uid string, state string, refs []Ref) Container {
	l := map[string]string{label.Managed: "true", label.User: login, label.UserID: uid, label.CreatedAt: "2025-03-01T09:30:00Z"}
	maps.Copy(l, EncodeLabels(refs))
	return Container{ID: id, Name: name, Labels: l, State: state, Created: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func TestHoldings(t *testing.T) {
	a := ds01Container("aaaaaaaaaaaaaaaa", "train._.1001", "alice", "1001", "running", []Ref{{"0", "GPU-a"}, {"1", "GPU-b"}})
	b := ds01Container("bbbb", "eval._.1002", "bob", "1002", "exited", []Ref{{"2", "GPU-c"}})
	none := ds01Container("cccc", "cpu._.1002", "bob", "1002", "running", nil)
	old := Container{ID: "dddd", Name: "old._.1003", Labels: map[string]string{label.Managed: "true", label.UserID: "1003", label.GPUs: "all"}, State: "running"}
	notOurs := Container{ID: "eeee", Name: "x", Labels: EncodeLabels([]Ref{{"3", "GPU-d"}}), State: "running"}
	broken := ds01Container("ffff", "bad._.1004", "eve", "1004", "running", nil)
	broken.Labels[LabelUUIDs] = "GPU-a,GPU-b"
	badUID := ds01Container("gggg", "bad._.x", "eve", "x", "running", []Ref{{"3", "GPU-d"}})
	noTime := ds01Container("hhhh", "t._.1005", "carol", "1005", "created", []Ref{{"3", "GPU-d"}})
	delete(noTime.Labels, label.CreatedAt)
	cs := []Container{a, b, none, old, notOurs, broken, badUID, noTime}

	hs, bad := Holdings(cs, false)
	if len(bad) != 2 || !strings.Contains(bad[0].Error(), "bad._.1004 (ffff)") || !strings.Contains(bad[1].Error(), "bad._.x") {
		t.Errorf("bad: %v", bad)
	}
	var got []string
	for _, h := range hs {
		got = append(got, h.Container+":"+h.UUID+":"+h.Login+":"+h.Since.Format(time.RFC3339))
	}
	want := []string{"train._.1001:GPU-a:alice:2025-03-01T09:30:00Z", "train._.1001:GPU-b:alice:2025-03-01T09:30:00Z", "eval._.1002:GPU-c:bob:2025-03-01T09:30:00Z", "t._.1005:GPU-d:carol:2025-03-01T09:00:00Z"}
	if !slices.Equal(got, want) {
		t.Errorf("holdings:\n%v\nwant\n%v", got, want)
	}
	// Released on stop: the exited one holds nothing; the created one,
	// not started yet, still holds.
	hs, _ = Holdings(cs, true)
	if len(hs) != 3 || hs[0].UID != 1001 || hs[1].UUID != "GPU-b" || hs[2].UUID != "GPU-d" {
		t.Errorf("released on stop: %+v", hs)
	}
}
