// Package packages is the shared package layer between a base and a
// user's layer: pip and apt packages installed as root in a throwaway
// container of the base that sees nothing of the host, the changes taken
// back through the Docker API as one deterministic layer, kept in ds01's
// cache by what was asked for on which base, and loaded as the
// ds01-packages/KEY image every user's build on that request reuses.
package packages

import "github.com/ds01/ds01/internal/engine"

// Installer makes and finds package layers on one engine.
type Installer struct {
	*engine.Docker
}

// New is an installer on the engine d.
func New(d *engine.Docker) *Installer { return &Installer{Docker: d} }
