package gpu

import (
	"slices"
	"time"
)

// Sample is one device's utilisation at one time, as an inventory gives
// it (Device.Utilization).
type Sample struct {
	UUID        string    `json:"uuid"`
	At          time.Time `json:"at"`
	Utilization int       `json:"utilization"`
}

// Samples are the utilisations of inv taken at at, for the devices that
// report one.
func Samples(inv Inventory, at time.Time) []Sample {
	var out []Sample
	for _, d := range inv.Devices {
		if d.Utilization != nil && d.UUID != "" {
			out = append(out, Sample{UUID: d.UUID, At: at, Utilization: *d.Utilization})
		}
	}
	return out
}

// IdleRule is the policy's idle release: a container whose every device
// showed 0% for For is idle. Samples further apart than MaxGap (0: any
// gap is fine) leave what happened between them unknown, so an idle
// stretch starts again after such a gap, and must reach to within MaxGap
// of now.
type IdleRule struct {
	For    time.Duration
	MaxGap time.Duration
}

// IdleContainer is a container the rule finds idle, and since when.
type IdleContainer struct {
	ContainerID string    `json:"container_id"`
	Container   string    `json:"container"`
	Login       string    `json:"login"`
	UID         uint32    `json:"uid"`
	UUIDs       []string  `json:"uuids"`
	Since       time.Time `json:"idle_since"`
}

// Idle is which running containers of held have been idle for rule.For
// at now. A device without samples (a MIG device: nvidia-smi gives no
// utilisation for one) is never idle, so neither is its container; idle
// time counts only from when the container came to hold the device.
func Idle(held []Holding, samples []Sample, rule IdleRule, now time.Time) []IdleContainer {
	if rule.For <= 0 {
		return nil
	}
	by := map[string][]Sample{}
	for _, s := range samples {
		if !s.At.After(now) {
			by[s.UUID] = append(by[s.UUID], s)
		}
	}
	for _, ss := range by {
		slices.SortFunc(ss, func(a, b Sample) int { return a.At.Compare(b.At) })
	}
	var order []string
	out := map[string]*IdleContainer{}
	busy := map[string]bool{}
	for _, h := range held {
		if h.State != "running" || busy[h.ContainerID] {
			continue
		}
		start, ok := idleSince(by[h.UUID], rule.MaxGap, now)
		if !ok {
			busy[h.ContainerID] = true
			continue
		}
		start = latest(start, h.Since)
		c := out[h.ContainerID]
		if c == nil {
			c = &IdleContainer{ContainerID: h.ContainerID, Container: h.Container, Login: h.Login, UID: h.UID, Since: start}
			out[h.ContainerID] = c
			order = append(order, h.ContainerID)
		}
		c.UUIDs = append(c.UUIDs, h.UUID)
		c.Since = latest(c.Since, start)
	}
	var idle []IdleContainer
	for _, id := range order {
		if c := out[id]; !busy[id] && !c.Since.After(now.Add(-rule.For)) {
			idle = append(idle, *c)
		}
	}
	return idle
}

// idleSince is when the run of 0% samples that reaches now began.
func idleSince(ss []Sample, maxGap time.Duration, now time.Time) (time.Time, bool) {
	if len(ss) == 0 || ss[len(ss)-1].Utilization != 0 {
		return time.Time{}, false
	}
	if maxGap > 0 && now.Sub(ss[len(ss)-1].At) > maxGap {
		return time.Time{}, false
	}
	start := ss[len(ss)-1].At
	for i := len(ss) - 2; i >= 0; i-- {
		if ss[i].Utilization != 0 || maxGap > 0 && ss[i+1].At.Sub(ss[i].At) > maxGap {
			break
		}
		start = ss[i].At
	}
	return start, true
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Keep is samples without those taken before since, and at most max of
// the newest: what an idle check needs (a rule's For back from now, and
// a little more), so that samples kept in memory stay bounded however
// long the service runs and however many devices the server has.
func Keep(samples []Sample, since time.Time, max int) []Sample {
	out := samples[:0:0]
	for _, s := range samples {
		if !s.At.Before(since) {
			out = append(out, s)
		}
	}
	if max >= 0 && len(out) > max {
		slices.SortStableFunc(out, func(a, b Sample) int { return a.At.Compare(b.At) })
		out = out[len(out)-max:]
	}
	return out
}
