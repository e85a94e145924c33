package record

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ds01/ds01/identity/asuser"
)

// LockProject serialises ds01's work on one project of one user (image
// create, update and retire, container deploy and retire --save): an
// exclusive lock on .lock-PROJECT in the user's records directory (rel,
// beneath dir), taken as cred, so two runs never interleave their loads,
// tags and records. waiting is called once if another run holds it.
// Cancelling ctx (Ctrl-C) stops the wait.
func LockProject(ctx context.Context, cred asuser.Cred, dir, rel, project string, waiting func()) (unlock func(), err error) {
	type result struct {
		unlock func()
		err    error
	}
	got := make(chan result, 1)
	go func() {
		d, err := asuser.OpenDir(cred, dir)
		if err != nil {
			got <- result{nil, err}
			return
		}
		defer d.Close()
		u, err := d.Lock(filepath.Join(rel, ".lock-"+project))
		got <- result{u, err}
	}()
	slow := time.NewTimer(300 * time.Millisecond)
	defer slow.Stop()
	for {
		select {
		case r := <-got:
			if r.err != nil {
				return nil, fmt.Errorf("locking project %s: %w", project, r.err)
			}
			return r.unlock, nil
		case <-slow.C:
			if waiting != nil {
				waiting()
			}
		case <-ctx.Done():
			// The lock may still come: let it go at once.
			go func() {
				if r := <-got; r.err == nil {
					r.unlock()
				}
			}()
			return nil, fmt.Errorf("waiting for another ds01 working on project %s: %w", project, ctx.Err())
		}
	}
}
