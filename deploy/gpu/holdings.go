package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ds01/ds01/assemble/label"
)

// Container is what the holdings are read from, as docker ps gives it.
type Container struct {
	ID, Name string
	Labels   map[string]string
	Created  time.Time
	State    string // Docker's: created, running, paused, restarting, exited, dead
}

// Holding is one device held by one container.
type Holding struct {
	Ref
	ContainerID string    `json:"container_id"`
	Container   string    `json:"container"` // its name, NAME._.UID
	Login       string    `json:"login"`
	UID         uint32    `json:"uid"`
	Since       time.Time `json:"since"`
	State       string    `json:"state"`
}

// Holdings rebuilds who holds what from the containers' labels. Only
// containers ds01 made count (ds01.managed and a numeric ds01.user_id).
// With releaseOnStop (the policy's "held until it stops", which idle
// release implies) a container that has stopped (exited, dead) holds
// nothing; one created and not yet started still holds, or a deploy
// without --start would hand its GPUs to the next deploy. Otherwise every
// container holds until it is removed. A container whose GPU labels do not decode is
// reported in bad and holds nothing: the caller says so, as its devices
// may be in use all the same.
func Holdings(cs []Container, releaseOnStop bool) (hs []Holding, bad []error) {
	for _, c := range cs {
		if c.Labels[label.Managed] != "true" || releaseOnStop && !active(c.State) {
			continue
		}
		refs, err := DecodeLabels(c.Labels)
		if errors.Is(err, ErrNoLabels) {
			continue
		}
		uid, uerr := strconv.ParseUint(c.Labels[label.UserID], 10, 32)
		if err != nil || uerr != nil {
			bad = append(bad, fmt.Errorf("container %s (%s): %w", c.Name, short(c.ID), errors.Join(err, uerr)))
			continue
		}
		since, terr := time.Parse(time.RFC3339, c.Labels[label.CreatedAt])
		if terr != nil {
			since = c.Created
		}
		for _, r := range refs {
			hs = append(hs, Holding{Ref: r, ContainerID: c.ID, Container: c.Name, Login: label.Unescape(c.Labels[label.User]), UID: uint32(uid), Since: since.UTC(), State: c.State})
		}
	}
	return hs, bad
}

func active(state string) bool {
	return state == "created" || state == "running" || state == "paused" || state == "restarting"
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
