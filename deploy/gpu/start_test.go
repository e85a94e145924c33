package gpu

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTaken(t *testing.T) {
	held := []Holding{
		{Ref: Ref{"0", "GPU-a"}, ContainerID: "mine", Container: "train._.1001"},
		{Ref: Ref{"0", "GPU-a"}, ContainerID: "bobs", Container: "eval._.1002"},
		{Ref: Ref{"1", "GPU-b"}, ContainerID: "carols", Container: "x._.1003"},
		{Ref: Ref{"2:1", "MIG-c"}, ContainerID: "daves", Container: "y._.1004"},
	}
	for _, tc := range []struct {
		name string
		refs []Ref
		want []string
	}{
		{"its own holding is no obstacle", []Ref{{"0", "GPU-a"}}, []string{"eval._.1002"}},
		{"free", []Ref{{"3", "GPU-d"}}, nil},
		{"two taken", []Ref{{"0", "GPU-a"}, {"1", "GPU-b"}}, []string{"eval._.1002", "x._.1003"}},
		{"a MIG device by UUID", []Ref{{"2:1", "MIG-c"}}, []string{"y._.1004"}},
		{"index alone does not match", []Ref{{"1", "GPU-z"}}, nil},
		{"no GPUs", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, h := range Taken(tc.refs, "mine", held) {
				got = append(got, h.Container)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKeep(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	at := func(m int) Sample { return Sample{UUID: "GPU-a", At: t0.Add(time.Duration(m) * time.Minute)} }
	ss := []Sample{at(3), at(0), at(1), at(2)}
	for _, tc := range []struct {
		name  string
		since int
		max   int
		want  []int
	}{
		{"all", 0, 10, []int{3, 0, 1, 2}},
		{"older ones go", 2, 10, []int{3, 2}},
		{"the newest within max", 0, 2, []int{2, 3}},
		{"none", 5, 10, nil},
		{"max 0", 0, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(ss)
			var got []int
			for _, s := range Keep(in, t0.Add(time.Duration(tc.since)*time.Minute), tc.max) {
				got = append(got, int(s.At.Sub(t0)/time.Minute))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if !slices.Equal(in, ss) {
				t.Error("Keep changed its input")
			}
		})
	}
}

func TestStartRefusal(t *testing.T) {
	taken := []Holding{{Ref: Ref{"0", "GPU-a"}, Login: "bob", Container: "eval._.1002"}}
	err := StartRefusal("alice", 1001, "train._.1001", taken)
	want := `GPU start: your GPUs went to bob's container eval._.1002 (GPU-a) while train._.1001 was stopped`
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "ds01 container retire train") || !errors.Is(err, ErrRefused) {
		t.Errorf("%v", err)
	}
}
