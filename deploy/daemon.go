// Package deploy is ds01's side of the Docker daemon: loading assembled
// images, and creating, running and removing containers.
package deploy

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ds01/ds01/internal/engine"
)

// Daemon is an engine and what ds01 does with it.
type Daemon struct {
	*engine.Docker

	// heldDescriptors, when set (by tests only), changes the base's layer
	// descriptors that a delta load names, as a wrong source of them would.
	heldDescriptors func(v1.Image) v1.Image
}

// Connect connects to the engine of the docker CLI's environment.
func Connect(ctx context.Context) (*Daemon, error) {
	e, err := engine.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &Daemon{Docker: e}, nil
}

// ConnectHost connects to the engine at host.
func ConnectHost(ctx context.Context, host string) (*Daemon, error) {
	e, err := engine.ConnectHost(ctx, host)
	if err != nil {
		return nil, err
	}
	return &Daemon{Docker: e}, nil
}
