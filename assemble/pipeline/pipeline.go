// Package pipeline is image create: a base resolved, the shared package
// layer made or reused, the user layer assembled on them, and the result
// loaded into the engine sending only what it lacks, with the record a
// rebuild starts from. It also lists and retires the images it made.
package pipeline

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/internal/engine"
)

// Pipeline makes images on one engine.
type Pipeline struct {
	*engine.Docker
	// Packages makes the shared package layers.
	Packages *packages.Installer

	// heldDescriptors, when set (by tests only), changes the base's layer
	// descriptors that a delta load names, as a wrong source of them would.
	heldDescriptors func(v1.Image) v1.Image
}

// New is a pipeline on the engine d.
func New(d *engine.Docker) *Pipeline { return &Pipeline{Docker: d, Packages: packages.New(d)} }
