package pipeline

import (
	"time"

	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/assemble/source"
)

// Reassembled is an image made again in memory from its recorded inputs,
// loaded nowhere: its user layer has bytes, its base and package layers
// are as the engine holds them (often known by diff ID alone).
type Reassembled struct {
	Image v1.Image
	// UserLayer is the image's top layer, with its bytes.
	UserLayer v1.Layer
	Base      *source.Base
	// Packages is the shared package layer, when the image has one.
	Packages *packages.Layer
}

// Reassemble makes again the image req describes, on the base and the
// package layer as they are here, and loads nothing. A push needs it:
// the engine gives neither the user layer's bytes nor the exact config
// without a docker save of the whole image, and assembly is
// deterministic, so what it makes is the image when the inputs are.
func (d *Pipeline) Reassemble(ctx context.Context, req CreateRequest) (*Reassembled, error) {
	tag, project, err := label.ImageName(req.Account.UID, req.Project)
	if err != nil {
		return nil, err
	}
	req.DryRun, req.Records = false, nil
	res := &CreateResult{Tag: tag, Project: project, Timings: map[string]time.Duration{}}
	r := &run{d: d, req: req, res: res, ro: req.Resolve}
	if err := r.resolve(ctx, &Plan{Tag: tag, Project: project, Resolve: req.Resolve}); err != nil {
		return nil, err
	}
	if !req.Packages.Empty() {
		if _, err := r.packages(ctx); err != nil {
			return nil, err
		}
	}
	a, err := r.assemble(ctx)
	if err != nil {
		return nil, err
	}
	ls, err := a.img.Layers()
	if err != nil {
		return nil, err
	}
	return &Reassembled{Image: a.img, UserLayer: ls[len(ls)-1], Base: res.Base, Packages: res.Packages}, nil
}
