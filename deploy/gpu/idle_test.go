package gpu

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestIdle(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	// Samples every 10 minutes from 0 to 120; now is 120.
	series := func(uuid string, util func(m int) int, skip ...int) []Sample {
		var ss []Sample
		for m := 0; m <= 120; m += 10 {
			if !slices.Contains(skip, m) {
				ss = append(ss, Sample{UUID: uuid, At: at(m), Utilization: util(m)})
			}
		}
		return ss
	}
	zero := func(int) int { return 0 }
	var samples []Sample
	samples = append(samples, series("GPU-idle", zero)...)
	samples = append(samples, series("GPU-idle2", zero)...)
	samples = append(samples, series("GPU-busy", func(m int) int { return 50 })...)
	samples = append(samples, series("GPU-woke", func(m int) int { return map[bool]int{true: 30}[m == 90] })...)
	samples = append(samples, series("GPU-recent", func(m int) int { return map[bool]int{true: 80}[m < 80] })...)
	samples = append(samples, series("GPU-gap", zero, 50, 60)...)
	samples = append(samples, series("GPU-stale", zero, 110, 120)...)
	samples = append(samples, Sample{UUID: "GPU-idle", At: at(130), Utilization: 99}) // after now: ignored
	h := func(c, uuid, state string, since int) Holding {
		return Holding{Ref: Ref{UUID: uuid}, ContainerID: c, Container: c + "._.1", UID: 1, Login: "u", State: state, Since: at(since)}
	}
	held := []Holding{
		h("a", "GPU-idle", "running", 0), h("a", "GPU-idle2", "running", 0), // both idle: idle since 0
		h("b", "GPU-idle2", "running", 0), h("b", "GPU-busy", "running", 0), // one busy: not idle
		h("c", "GPU-woke", "running", 0),      // busy at 90: idle only since 100
		h("d", "GPU-recent", "running", 0),    // idle since 80: 40 minutes
		h("e", "GPU-idle", "running", 90),     // held only since 90
		h("f", "MIG-nosamples", "running", 0), // no utilisation: never idle
		h("g", "GPU-gap", "running", 0),       // 30-minute gap at 40–70: idle since 70
		h("i", "GPU-stale", "running", 0),     // sampling stopped at 100
		h("j", "GPU-idle", "exited", 0),       // stopped already
	}
	for _, tc := range []struct {
		rule IdleRule
		want []string
	}{
		{IdleRule{For: 60 * time.Minute, MaxGap: 15 * time.Minute}, []string{"a@0"}},
		{IdleRule{For: 40 * time.Minute, MaxGap: 15 * time.Minute}, []string{"a@0", "d@80", "g@70"}},
		{IdleRule{For: 40 * time.Minute}, []string{"a@0", "d@80", "g@0", "i@0"}},
		{IdleRule{For: 20 * time.Minute, MaxGap: 15 * time.Minute}, []string{"a@0", "c@100", "d@80", "e@90", "g@70"}},
		{IdleRule{}, nil},
	} {
		var got []string
		for _, c := range Idle(held, samples, tc.rule, at(120)) {
			got = append(got, c.ContainerID+"@"+strconv.Itoa(int(c.Since.Sub(t0).Minutes())))
			if c.ContainerID == "a" && !slices.Equal(c.UUIDs, []string{"GPU-idle", "GPU-idle2"}) {
				t.Errorf("a's UUIDs %v", c.UUIDs)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: idle %v, want %v", tc.rule, got, tc.want)
		}
	}
}

func TestSamples(t *testing.T) {
	inv := recorded(t, "h100-mig")
	now := time.Now()
	ss := Samples(inv, now)
	if len(ss) != 2 || ss[0].UUID != inv.Devices[5].UUID || ss[0].Utilization != 12 || !ss[1].At.Equal(now) {
		t.Errorf("samples %+v", ss)
	}
}
