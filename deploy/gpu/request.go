package gpu

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Request is what --gpus asks for: a count, named devices, or all.
type Request struct {
	Count   int      `json:"count,omitempty"`
	Devices []string `json:"devices,omitempty"` // indices ("0", "1:2") or UUIDs
	All     bool     `json:"all,omitempty"`
}

// String is the request as --gpus takes it.
func (r Request) String() string {
	switch {
	case r.All:
		return "all"
	case len(r.Devices) > 0:
		return "device=" + strings.Join(r.Devices, Sep)
	}
	return strconv.Itoa(r.Count)
}

// want is how many devices r asks for, -1 for all.
func (r Request) want() int {
	switch {
	case r.All:
		return -1
	case len(r.Devices) > 0:
		return len(r.Devices)
	}
	return r.Count
}

// ParseRequest reads --gpus as docker run does (all, a count, or
// device=0,2), with '+' also separating devices, as the labels do.
func ParseRequest(s string) (Request, error) {
	switch {
	case s == "all":
		return Request{All: true}, nil
	case strings.HasPrefix(s, "device="):
		ids := strings.FieldsFunc(strings.TrimPrefix(s, "device="), func(r rune) bool { return r == ',' || r == '+' })
		if len(ids) == 0 || len(ids) > maxRefs || strings.Count(s, ",")+strings.Count(s, "+")+1 != len(ids) {
			return Request{}, fmt.Errorf("--gpus %q: list GPU indices or UUIDs, e.g. device=0,2", s)
		}
		for n, id := range ids {
			if !indexRE.MatchString(id) && !uuidRE.MatchString(id) {
				return Request{}, fmt.Errorf("--gpus %q: %q is neither a GPU index (0, or 1:2 for a MIG device) nor a GPU or MIG UUID", s, id)
			}
			if slices.Contains(ids[:n], id) {
				return Request{}, fmt.Errorf("--gpus %q names %s twice", s, id)
			}
		}
		return Request{Devices: ids}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > maxRefs {
		return Request{}, fmt.Errorf("--gpus %q: give all, a count from 1, or device=0,2", s)
	}
	return Request{Count: n}, nil
}
