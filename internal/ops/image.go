package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/identity/asuser"
)

// ImageCreate is image create's request: what the user asked for, already
// parsed (the wizard, the catalog and the flags are the CLI's).
type ImageCreate struct {
	Project string
	BaseRef string
	Catalog map[string]string
	Created time.Time
	Force   bool
	DryRun  bool
	Offline bool
	Pull    bool
	// Packages, Env and Presets are as in pipeline.CreateRequest.
	Packages packages.Request
	Asked    *packages.Request
	Env      []string
	Presets  []string
}

// ErrPullOffline is --pull with --offline.
var ErrPullOffline = errors.New("--pull asks the registry and --offline forbids it: give one")

// CreateImage makes id's image of a project, under the project's lock
// (a dry run takes none: it changes nothing).
func (o *Ops) CreateImage(ctx context.Context, id identity.Identity, r ImageCreate, ev Events) (*pipeline.CreateResult, error) {
	if r.Pull && r.Offline {
		return nil, ErrPullOffline
	}
	if !r.DryRun {
		unlock, err := o.Lock(ctx, id, r.Project, ev)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	return o.create(ctx, id, r, ev)
}

func (o *Ops) create(ctx context.Context, id identity.Identity, r ImageCreate, ev Events) (*pipeline.CreateResult, error) {
	req := pipeline.CreateRequest{
		Project: r.Project, BaseRef: r.BaseRef, Catalog: r.Catalog, Created: r.Created,
		Replace: r.Force, DryRun: r.DryRun, Packages: r.Packages, Asked: r.Asked, Env: r.Env, Presets: r.Presets,
		Resolve: source.ResolveOptions{Offline: r.Offline, Refresh: r.Pull},
	}
	if err := o.fill(id, &req, ev); err != nil {
		return nil, err
	}
	defer req.Records.Close()
	return o.D.Images.Create(ctx, req)
}

// ImageUpdate is image update's request.
type ImageUpdate struct {
	Project string
	Offline bool
	Pull    bool
	// DiscardSaved rebuilds even when container retire --save put layers
	// into the image, which the rebuild drops.
	DiscardSaved bool
	// UpgradePackages installs what the record asked for anew, instead of
	// exactly what was installed.
	UpgradePackages bool
}

// UpdateImage rebuilds id's image of a project from its record, under the
// project's lock.
func (o *Ops) UpdateImage(ctx context.Context, id identity.Identity, r ImageUpdate, ev Events) (*pipeline.CreateResult, error) {
	if r.Pull && r.Offline {
		return nil, ErrPullOffline
	}
	_, project, err := label.ImageName(id.UID, r.Project)
	if err != nil {
		return nil, err
	}
	unlock, err := o.Lock(ctx, id, project, ev)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := o.fromRecord(id, project, r, ev)
	if err != nil {
		return nil, err
	}
	return o.create(ctx, id, c, ev)
}

// fromRecord is the build request a record makes: the record is input
// like any flag, checked as such.
func (o *Ops) fromRecord(id identity.Identity, project string, r ImageUpdate, ev Events) (ImageCreate, error) {
	recs, err := o.Records(id)
	if err != nil {
		return ImageCreate{}, err
	}
	defer recs.Close()
	rec, err := recs.Read(project)
	if errors.Is(err, os.ErrNotExist) {
		return ImageCreate{}, fmt.Errorf("no record of how %s was made in %s; make it with `ds01 image create %s --base REF`", project, recs.Dir(), project)
	} else if err != nil {
		return ImageCreate{}, err
	}
	if rec.UID != id.UID || rec.GID != id.GID {
		return ImageCreate{}, fmt.Errorf("image %s was made for UID/GID %d:%d, and you are %d:%d; rebuild it for you with `ds01 image create %s --base %s --force`",
			rec.Image, rec.UID, rec.GID, id.UID, id.GID, project, rec.Base.Ref)
	}
	if err := rec.Check(id.UID, id.GID); err != nil {
		return ImageCreate{}, fmt.Errorf("%s: %w; the record is input like any flag, and this one would not be accepted from the command line: make the image again with `ds01 image create %s --force`", recs.Path(project), err, project)
	}
	if len(rec.Saved) > 0 && !r.DiscardSaved {
		return ImageCreate{}, fmt.Errorf("%s holds %d layer(s) saved by container retire --save, which a rebuild from its recorded inputs would drop; rebuild anyway with --discard-saved", rec.Image, len(rec.Saved))
	}
	c := ImageCreate{Project: project, BaseRef: rec.Base.Ref, Catalog: rec.Catalog, Force: true, Env: rec.Env, Presets: rec.Presets, Offline: r.Offline, Pull: r.Pull}
	if rec.SourceDateEpoch != nil {
		c.Created = time.Unix(*rec.SourceDateEpoch, 0).UTC()
	}
	if rec.Packages == nil {
		return c, nil
	}
	c.Packages, c.Asked = *rec.Packages, rec.Packages
	if rec.Installed != nil && !r.UpgradePackages {
		// Exactly what was installed, from the cached wheels and .debs
		// when offline.
		c.Packages = rec.Installed.Pinned(*rec.Packages)
	}
	c.Packages.FindLinks, err = recordedWheels(id, c.Packages.FindLinks, ev)
	return c, err
}

// recordedWheels is the record's wheel directory checked with the
// caller's rights, as --wheels is: a record naming a directory only root
// can read must not get it mounted into the install container. One gone
// since is no error: what it gave is in ds01's cache.
func recordedWheels(id identity.Identity, dir string, ev Events) (string, error) {
	if dir == "" {
		return "", nil
	}
	real, err := asuser.UserDir(id.CallerCred(), dir, asuser.Read)
	switch {
	case errors.Is(err, os.ErrNotExist):
		ev.warn("wheel directory %s is gone; installing from ds01's cache", dir)
		return "", nil
	case err != nil:
		return "", fmt.Errorf("the record's wheel directory: %w; ds01 mounts only a directory you may read yourself", err)
	}
	return real, nil
}

// ListImages are id's images.
func (o *Ops) ListImages(ctx context.Context, id identity.Identity) ([]pipeline.ImageInfo, error) {
	return o.D.Images.ListImages(ctx, id.UID, id.GID)
}

// legacyScope is whose committed images the legacy options see: root's
// own call sees everyone's, anyone else (or root acting for a user) only
// those tagged ._.{UID}.
func legacyScope(id identity.Identity) *uint32 {
	if Everyone(id) {
		return nil
	}
	return &id.UID
}

// LegacyImages are the old flow's committed images id may see.
func (o *Ops) LegacyImages(ctx context.Context, id identity.Identity) ([]pipeline.LegacyImage, error) {
	return o.D.Images.LegacyImages(ctx, legacyScope(id))
}

// RetireLegacy removes those of tags, the old flow's committed images,
// that id may see (LegacyImages), and returns the ones it removed; what a
// container still uses is kept and named in the error.
func (o *Ops) RetireLegacy(ctx context.Context, id identity.Identity, tags []string) ([]string, error) {
	mine, err := o.LegacyImages(ctx, id)
	if err != nil {
		return nil, err
	}
	var removed, failed []string
	for _, tag := range tags {
		if !slices.ContainsFunc(mine, func(m pipeline.LegacyImage) bool { return m.Tag == tag }) {
			failed = append(failed, tag+": not one of the committed images you may retire")
			continue
		}
		if err := o.D.Images.RemoveTag(ctx, tag, false); err != nil {
			failed = append(failed, err.Error())
			continue
		}
		removed = append(removed, tag)
	}
	if len(failed) > 0 {
		return removed, fmt.Errorf("some images were kept (a container still uses them?):\n  %s", strings.Join(failed, "\n  "))
	}
	return removed, nil
}

// RetireImage removes id's image of a project and its record, refusing an
// image containers use unless force.
func (o *Ops) RetireImage(ctx context.Context, id identity.Identity, project string, force bool, ev Events) (tag string, err error) {
	tag, project, err = label.ImageName(id.UID, project)
	if err != nil {
		return "", err
	}
	unlock, err := o.Lock(ctx, id, project, ev)
	if err != nil {
		return "", err
	}
	defer unlock()
	users, err := o.D.Images.ContainersOf(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("%s: no such image of yours (ds01 image list shows them): %w", tag, err)
	}
	if len(users) > 0 && !force {
		return "", fmt.Errorf("%s is used by container(s) %s; retire them first (ds01 container retire NAME), or remove the tag anyway with --force", tag, strings.Join(users, ", "))
	}
	if err := o.D.Images.RemoveTag(ctx, tag, force); err != nil {
		return "", err
	}
	recs, err := o.Records(id)
	if err == nil {
		err = recs.Remove(project)
		recs.Close()
	}
	if err != nil {
		return "", fmt.Errorf("retired %s, but its record was not removed: %w", tag, err)
	}
	return tag, nil
}
