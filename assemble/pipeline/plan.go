package pipeline

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/internal/engine"
)

// Plan is what image create decided before changing anything: the image's
// name, what it replaces, where the base is and what giving it to the
// engine takes. A dry run whose base must be fetched first ends with the
// plan; any other run carries it out.
type Plan struct {
	Tag, Project string
	// Replaced is the image ID the tag points at now, if any.
	Replaced string
	Resolve  source.ResolveOptions
	// Base is where the base is now.
	Base source.Location
	// Load is LoadPending when a dry run ends with the plan; otherwise it
	// is decided as the run goes (see CreateResult.Load).
	Load LoadPath
}

// Plan decides what Create would do for req, reading the engine and the
// cache only.
func (d *Pipeline) Plan(ctx context.Context, req CreateRequest) (*Plan, error) {
	tag, project, err := label.ImageName(req.Account.UID, req.Project)
	if err != nil {
		return nil, err
	}
	if req.OwnImagesOnly {
		if err := record.CheckOwnImage(req.BaseRef, nil, req.Account.UID); err != nil {
			return nil, err
		}
	}
	p := &Plan{Tag: tag, Project: project, Resolve: req.Resolve}
	if p.Resolve.Log == nil {
		p.Resolve.Log = req.Log
	}
	if p.Replaced, err = d.replaces(ctx, req, tag, project); err != nil {
		return nil, err
	}
	if !req.DryRun {
		return p, nil
	}
	if p.Base, err = source.Locate(ctx, d.Docker, req.BaseRef, p.Resolve); err != nil {
		return nil, err
	}
	p.Load = pendingLoad(d.Store, p.Base)
	return p, nil
}

// replaces is the ID of the project's image that the build would replace,
// refused without Replace.
func (d *Pipeline) replaces(ctx context.Context, req CreateRequest, tag, project string) (string, error) {
	old, err := d.ImageInspect(ctx, tag)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspecting %s: %w", tag, err)
	}
	if !req.Replace {
		return "", fmt.Errorf("%s: %w (made %s from %s); rebuild it from its recorded inputs with `ds01 image update %s`, or replace it with `ds01 image create %s --force`",
			tag, ErrExists, old.Created, old.Config.Labels[label.Base], project, project)
	}
	return old.ID, nil
}

// pendingLoad is the load path a dry run reports for a base that is not
// ready: what would be fetched, and from where. A ready base gives the
// zero LoadPath: the run goes on to compute the image.
func pendingLoad(store engine.Store, loc source.Location) LoadPath {
	switch loc.Fetch {
	case source.FetchExport:
		return LoadPath{Kind: LoadPending, Store: store, DryRun: true, Pending: PendingExport}
	case source.FetchStream:
		from := "pulled from its registry into ds01's cache"
		if store == engine.Containerd {
			from = "pulled into ds01's cache first"
		}
		if !loc.Pull {
			from = "taken from ds01's cache (" + loc.Cached + ")"
		}
		return LoadPath{Kind: LoadPending, Store: store, DryRun: true, Pending: PendingStream, From: from}
	}
	return LoadPath{}
}
