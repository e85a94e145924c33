package gpu

import (
	"fmt"
	"slices"
	"strings"
)

// RuleStart refuses to start a stopped container whose GPUs another
// container came to hold while it was stopped (held until it stops).
const RuleStart = "GPU start"

// Taken is the holdings, by containers other than containerID, of the
// devices refs name: what stands in the way of starting containerID
// again. Devices are matched by UUID, as they are granted: a GPU split
// into MIG devices while the container was stopped is not grantable
// whole, and the allocator never gives its MIG devices to anyone while
// a holding of the whole GPU stands.
func Taken(refs []Ref, containerID string, held []Holding) []Holding {
	want := map[string]bool{}
	for _, r := range refs {
		want[r.UUID] = true
	}
	var out []Holding
	for _, h := range held {
		if h.ContainerID != containerID && want[h.UUID] {
			out = append(out, h)
		}
	}
	return out
}

// StartRefusal is the refusal to start container (NAME._.UID, of login)
// again while taken holds its GPUs.
func StartRefusal(login string, uid uint32, container string, taken []Holding) *Refusal {
	var who []string
	for _, h := range taken {
		who = append(who, fmt.Sprintf("%s's container %s (%s)", h.Login, h.Container, h.UUID))
	}
	name, _, _ := strings.Cut(container, "._.")
	msg := fmt.Sprintf("your GPUs went to %s while %s was stopped (GPUs are held only while a container runs here, and idle ones are released); retire it (ds01 container retire %s, --save keeps its changes) and deploy again (ds01 container deploy %s --gpus N) for free GPUs",
		strings.Join(slices.Compact(who), ", "), container, name, name)
	return &Refusal{Rule: RuleStart, Login: login, UID: uid, msg: msg}
}
