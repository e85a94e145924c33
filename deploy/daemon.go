// Package deploy is containers: the three flows of container deploy, the
// options and binds a user's container gets, and listing, opening,
// retiring and saving them.
package deploy

import (
	"context"

	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/internal/engine"
)

// Daemon is an engine and what ds01 does with it.
type Daemon struct {
	*engine.Docker
	// Images makes the images a deploy assembles (container deploy
	// --image) and tells which containers use an image.
	Images *pipeline.Pipeline
}

// New deploys on the engine d.
func New(d *engine.Docker) *Daemon { return &Daemon{Docker: d, Images: pipeline.New(d)} }

// Connect connects to the engine of the docker CLI's environment.
func Connect(ctx context.Context) (*Daemon, error) {
	e, err := engine.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return New(e), nil
}

// ConnectHost connects to the engine at host.
func ConnectHost(ctx context.Context, host string) (*Daemon, error) {
	e, err := engine.ConnectHost(ctx, host)
	if err != nil {
		return nil, err
	}
	return New(e), nil
}
