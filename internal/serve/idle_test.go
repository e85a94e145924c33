package serve

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/serve/audit"
)

type recorder struct{ got []audit.Entry }

func (r *recorder) Record(e audit.Entry) { r.got = append(r.got, e) }

// The loop releases a running container once every GPU of it showed 0%
// for the rule's duration, not before, not a busy one, and audits it.
func TestIdleTick(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	pct := func(n int) *int { return &n }
	util := map[string]*int{"GPU-a": pct(0), "GPU-b": pct(0), "GPU-c": pct(40)}
	held := []gpu.Holding{
		{Ref: gpu.Ref{Index: "0", UUID: "GPU-a"}, ContainerID: "idle", Container: "train._.1001", State: "running", Since: t0.Add(-time.Hour)},
		{Ref: gpu.Ref{Index: "1", UUID: "GPU-b"}, ContainerID: "half", Container: "eval._.1002", State: "running", Since: t0.Add(-time.Hour)},
		{Ref: gpu.Ref{Index: "2", UUID: "GPU-c"}, ContainerID: "half", Container: "eval._.1002", State: "running", Since: t0.Add(-time.Hour)},
	}
	r := newIdleRelease(3*time.Minute, time.Minute)
	r.inventory = func(context.Context) (gpu.Inventory, error) {
		var inv gpu.Inventory
		for _, u := range []string{"GPU-a", "GPU-b", "GPU-c"} {
			inv.Devices = append(inv.Devices, gpu.Device{UUID: u, Utilization: util[u]})
		}
		return inv, nil
	}
	r.held = func(context.Context) ([]gpu.Holding, error) { return held, nil }
	var released []string
	r.release = func(_ context.Context, c gpu.IdleContainer) error {
		released = append(released, c.Container)
		return errors.New("stop failed")
	}
	rec := &recorder{}
	r.rec, r.warn = rec, func(string) {}

	for m := 0; m <= 2; m++ {
		if got := r.tick(context.Background(), t0.Add(time.Duration(m)*time.Minute)); len(got) != 0 {
			t.Fatalf("minute %d: released %v before the rule's 3 minutes", m, got)
		}
	}
	r.tick(context.Background(), t0.Add(3*time.Minute))
	if !slices.Equal(released, []string{"train._.1001"}) {
		t.Fatalf("released %v, want only the container whose every GPU was idle", released)
	}
	e := rec.got[0]
	if len(rec.got) != 1 || e.Action != ActionIdleRelease || e.Target != "train._.1001" || e.Rule != RuleIdleRelease || e.Decision != audit.Error {
		t.Errorf("audit: %+v", rec.got)
	}
	// Bounded: samples older than the rule (and two intervals) are gone.
	for m := 4; m < 40; m++ {
		r.tick(context.Background(), t0.Add(time.Duration(m)*time.Minute))
	}
	if n := len(r.samples); n > 3*6 {
		t.Errorf("%d samples kept for 3 devices and a 3-minute rule", n)
	}
}

// A gap in the samples longer than three intervals starts idle time anew.
func TestIdleTickGap(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	zero := 0
	r := newIdleRelease(2*time.Minute, time.Minute)
	r.inventory = func(context.Context) (gpu.Inventory, error) {
		return gpu.Inventory{Devices: []gpu.Device{{UUID: "GPU-a", Utilization: &zero}}}, nil
	}
	r.held = func(context.Context) ([]gpu.Holding, error) {
		return []gpu.Holding{{Ref: gpu.Ref{Index: "0", UUID: "GPU-a"}, ContainerID: "c", Container: "x._.1", State: "running"}}, nil
	}
	r.release, r.rec, r.warn = func(context.Context, gpu.IdleContainer) error { return nil }, &recorder{}, func(string) {}
	r.tick(context.Background(), t0)
	if got := r.tick(context.Background(), t0.Add(10*time.Minute)); len(got) != 0 {
		t.Errorf("released across a 10-minute gap: %v", got)
	}
	r.tick(context.Background(), t0.Add(11*time.Minute))
	if got := r.tick(context.Background(), t0.Add(12*time.Minute)); len(got) != 1 {
		t.Errorf("not released after 2 minutes of samples: %v", got)
	}
}

type fakeIdleDocker struct {
	calls  []string
	script []string
}

func (f *fakeIdleDocker) Exec(_ context.Context, id, user string, cmd ...string) (engine.RunResult, error) {
	f.calls, f.script = append(f.calls, "exec "+id+" as "+user), cmd
	return engine.RunResult{ExitCode: 127}, nil
}

func (f *fakeIdleDocker) ContainerStop(_ context.Context, id string, o client.ContainerStopOptions) (client.ContainerStopResult, error) {
	f.calls = append(f.calls, "stop "+id)
	return client.ContainerStopResult{}, nil
}

// The notice comes first and says why and how to get GPUs again; a
// notice that fails does not keep the container running.
func TestReleaser(t *testing.T) {
	f := &fakeIdleDocker{}
	var warned []string
	rel := releaser(f, 2*time.Hour, func(s string) { warned = append(warned, s) })
	c := gpu.IdleContainer{ContainerID: "abc", Container: "train._.1001", UUIDs: []string{"GPU-a"}, Since: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	if err := rel(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.calls, []string{"exec abc as 0", "stop abc"}) || len(warned) != 1 {
		t.Fatalf("calls %v, warnings %v", f.calls, warned)
	}
	msg := f.script[len(f.script)-1]
	for _, want := range []string{"GPU-a", "idle_release of 2h0m0s", "ds01 container open train", "ds01 container retire train", "ds01 container deploy train --gpus N"} {
		if !strings.Contains(msg, want) {
			t.Errorf("notice lacks %q: %s", want, msg)
		}
	}
}

func TestIdleInterval(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{{"", time.Minute, true}, {"2s", 2 * time.Second, true}, {"0", 0, false}, {"-1s", 0, false}, {"soon", 0, false}} {
		t.Setenv(IdleIntervalEnv, tc.v)
		got, err := idleInterval()
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("%q: %v %v", tc.v, got, err)
		}
	}
}
