package dockerapi

import "testing"

// Only start and restart of a container are guarded: an exec start, an
// unpause or a stop never hand a container GPUs it does not hold.
func TestStartsContainer(t *testing.T) {
	var got []string
	for i := range routes {
		if startsContainer(&routes[i]) {
			got = append(got, routes[i].method+" "+routes[i].pattern)
		}
	}
	want := map[string]bool{"POST /containers/{id}/start": true, "POST /containers/{id}/restart": true}
	if len(got) != len(want) {
		t.Fatalf("guarded: %v", got)
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("guarded %s", g)
		}
	}
}
