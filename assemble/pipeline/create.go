package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"
)

// FilesCache keeps the files the user layer reads from a base, per base
// image ID, so that later builds on the base need no container.
type FilesCache interface {
	Files(key string) (*layers.Files, bool)
	PutFiles(key string, fs *layers.Files) error
}

// CreateRequest is every input of one image build.
type CreateRequest struct {
	Login   string // the host login, recorded in a label
	Account passwd.Account
	Project string
	BaseRef string
	// Catalog records the catalog choice the base came from, if any
	// (framework, version, arch, image).
	Catalog map[string]string
	// Created fixes the image's time (SOURCE_DATE_EPOCH); zero: the base's.
	Created time.Time
	// Replace allows replacing an existing image of the project.
	Replace bool
	// DryRun computes the image but loads nothing.
	DryRun  bool
	Version string // ds01's, recorded in a label
	Cache   FilesCache
	// Resolve says where the base may come from besides the daemon.
	Resolve source.ResolveOptions
	// Packages go into a shared layer between the base and the user's.
	Packages Packages
	// Asked is what the user asked for, recorded for a later upgrade;
	// empty means Packages (a rebuild installs pins, but records the ask).
	Asked *Packages
	// PackageOutput gets the package managers' output.
	PackageOutput io.Writer
	// Env are KEY=VALUE settings for the image (--env).
	Env []string
	// Presets are the package presets asked for, recorded; with jupyter
	// the user's home gets a kernel for the project and a safe server
	// configuration.
	Presets []string
	// Records is where the record of the build is written (see Record),
	// as its user; nil writes none.
	Records *Records
	// Log gets one line per step when not nil (--verbose).
	Log io.Writer
	// OwnImagesOnly refuses a base that is another user's image (see
	// CheckOwnImage), for a caller through sudo.
	OwnImagesOnly bool
}

// CreateResult says what was made and how.
type CreateResult struct {
	Tag       string
	Project   string
	ImageID   string // as the daemon reports it
	Base      *source.Base
	LayerSize int64
	Load      LoadPath
	Sent      int64
	Replaced  string // the image ID the tag pointed at before, if any
	// Resolution says where the base came from.
	Resolution source.Resolution
	// Packages is the package layer, when packages were asked for.
	Packages *PackageResult
	Labels   map[string]string
	Warnings []string
	Timings  map[string]time.Duration
}

// ErrExists is returned when the project's image exists and Replace is off.
var ErrExists = errors.New("image exists")

// Create assembles the user's image on a base held by the daemon and loads
// it, sending only the new layer and the config. On any failure nothing is
// left behind: no image, no container.
func (d *Pipeline) Create(ctx context.Context, req CreateRequest) (*CreateResult, error) {
	tag, project, err := label.ImageName(req.Account.UID, req.Project)
	if err != nil {
		return nil, err
	}
	if req.OwnImagesOnly {
		if err := CheckOwnImage(req.BaseRef, nil, req.Account.UID); err != nil {
			return nil, err
		}
	}
	res := &CreateResult{Tag: tag, Project: project, Timings: map[string]time.Duration{}}
	logf := func(format string, a ...any) {
		if req.Log != nil {
			fmt.Fprintf(req.Log, format+"\n", a...)
		}
	}
	step := func(name string, t time.Time) { res.Timings[name] = time.Since(t) }

	if old, err := d.ImageInspect(ctx, tag); err == nil {
		if !req.Replace {
			return nil, fmt.Errorf("%s: %w (made %s from %s); rebuild it from its recorded inputs with `ds01 image update %s`, or replace it with `ds01 image create %s --force`",
				tag, ErrExists, old.Created, old.Config.Labels[label.Base], project, project)
		}
		res.Replaced = old.ID
	} else if !cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("inspecting %s: %w", tag, err)
	}

	t := time.Now()
	ro := req.Resolve
	if ro.Log == nil {
		ro.Log = req.Log
	}
	if req.DryRun && d.Store == engine.Containerd {
		if _, _, ins, ok := source.HeldBase(ctx, d.Docker, req.BaseRef, "", ro); !ok && !(ro.Refresh && !ro.Offline) {
			if ins != nil {
				res.Load = LoadPath{Kind: LoadPending, Store: engine.Containerd, DryRun: true, Pending: PendingExport}
				return res, nil
			}
			from := "pulled into ds01's cache first"
			if cd := source.CachedDigest(ro.Cache, req.BaseRef); cd != "" {
				from = "taken from ds01's cache (" + cd + ")"
			}
			res.Load = LoadPath{Kind: LoadPending, Store: engine.Containerd, DryRun: true, Pending: PendingStream, From: from}
			return res, nil
		}
	} else if req.DryRun {
		// A dry run changes nothing: no pull, no load of the base. What
		// it would do without the base in the daemon is said, not done.
		if _, err := source.InDaemon(ctx, d.Docker, req.BaseRef); errors.Is(err, source.ErrNotInDaemon) {
			from := "pulled from its registry into ds01's cache"
			if d := source.CachedDigest(ro.Cache, req.BaseRef); d != "" {
				from = "taken from ds01's cache (" + d + ")"
			}
			res.Load = LoadPath{Kind: LoadPending, Store: d.Store, DryRun: true, Pending: PendingStream, From: from}
			return res, nil
		}
	}
	base, how, err := source.Resolve(ctx, d.Docker, req.BaseRef, ro)
	if err != nil {
		return nil, err
	}
	if req.OwnImagesOnly {
		if cfg, err := base.Image.ConfigFile(); err != nil {
			return nil, err
		} else if err := CheckOwnImage(req.BaseRef, cfg.Config.Labels, req.Account.UID); err != nil {
			return nil, err
		}
	}
	if how.Notice != "" {
		res.Warnings = append(res.Warnings, how.Notice)
	}
	res.Base, res.Resolution = base, how
	step("resolve base", t)
	logf("base %s: image %s, %d layers, from the %s", req.BaseRef, base.ID, len(base.LayerIDs()), how.From)

	if !req.Packages.Empty() {
		switch {
		case how.Full:
			return nil, fmt.Errorf("packages on the containerd image store need the base held under descriptors ds01 knows, and the engine did not keep %s as ds01's cache has it; nothing was changed", req.BaseRef)
		case req.DryRun:
			res.Load = LoadPath{Kind: LoadPending, Store: d.Store, DryRun: true, Pending: PendingPackages}
			return res, nil
		}
		t = time.Now()
		pr, err := d.PackageLayer(ctx, base, req.Packages, PackageOptions{Cache: ro.Cache, Offline: ro.Offline, Output: req.PackageOutput, For: tag})
		if err != nil {
			return nil, err
		}
		res.Packages = pr
		step("packages", t)
		logf("packages: layer %s (%d bytes), %s", pr.DiffID, pr.Size, map[bool]string{true: "shared layer reused, nothing installed", false: "installed now"}[pr.Reused])
		// The user layer goes on base + packages: its files (a new group
		// a package made, say) are read from there.
		if base, err = source.InDaemon(ctx, d.Docker, pr.Image); err != nil {
			return nil, err
		}
		if d.Store == engine.Containerd {
			if !base.Described() {
				return nil, fmt.Errorf("the package image %s carries no record of its layer descriptors; remove it (docker rmi %s) and build again", pr.Image, pr.Image)
			}
			how.Descriptors = source.DescriptorSource{Kind: source.DescPackageImage, Detail: pr.Image}
		}
	}

	t = time.Now()
	files, cached := (*layers.Files)(nil), false
	if req.Cache != nil {
		files, cached = req.Cache.Files(base.ID)
	}
	if !cached {
		if how.Full {
			// The engine does not hold the base as the cache has it: read
			// the few files from the cached layers.
			files, err = assemble.Files(base.Image)
		} else if how.Held {
			files, err = source.FilesFor(ctx, d.Docker, base.Ref, layers.UserWant, tag)
		} else {
			files, err = source.FilesFor(ctx, d.Docker, base.ID, layers.UserWant, tag)
		}
		if err != nil {
			return nil, err
		}
		if req.Cache != nil {
			if err := req.Cache.PutFiles(base.ID, files); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("could not cache the base's files: %v", err))
			}
		}
	}
	step("read base files", t)
	logf("base files: %s", map[bool]string{true: "from the cache index", false: "copied from a never-started container"}[cached])

	t = time.Now()
	meta := label.Image{
		UID: req.Account.UID, GID: req.Account.GID, Username: req.Account.Name, Login: req.Login, Project: project,
		Base: req.BaseRef, BaseID: base.ID, BaseDigest: base.Digest(), Version: req.Version, Catalog: req.Catalog,
	}
	if !req.Created.IsZero() {
		s := req.Created.Unix()
		meta.SourceDateEpoch = &s
	}
	if pr := res.Packages; pr != nil {
		meta.PackagesApt, meta.PackagesPip, meta.PackagesLayer = pr.Apt, pr.Pip, pr.DiffID.String()
	}
	labels := meta.Encode()
	opts := assemble.Options{Account: req.Account, Created: req.Created, Labels: labels, Env: req.Env}
	if slices.Contains(req.Presets, "jupyter") {
		opts.HomeFiles = assemble.JupyterFiles(project)
	}
	deltaBase := base.Image
	if d.heldDescriptors != nil && !how.Full {
		deltaBase = d.heldDescriptors(deltaBase)
	}
	built, err := assemble.Image(deltaBase, files, opts)
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, built.Warnings...)
	res.LayerSize, _ = built.UserLayer.Size()
	cfgName, err := built.Image.ConfigName()
	if err != nil {
		return nil, err
	}
	cfg, _ := built.Image.ConfigFile()
	res.Labels = maps.Clone(cfg.Config.Labels)
	step("assemble", t)
	logf("assembled %s: config %s, user layer %d bytes", tag, cfgName, res.LayerSize)

	res.Load = LoadPath{Kind: LoadDelta, Store: d.Store, Descriptors: how.Descriptors}
	var omit func(v1.Hash) bool
	if how.Full {
		// On the containerd store a docker-archive without the base's
		// layers is refused or, worse, makes a broken image.
		res.Load = LoadPath{Kind: LoadFull, Store: d.Store, Why: FullNotHeld}
		res.Warnings = append(res.Warnings, "the containerd image store did not keep the base under the cached manifest: the whole image, base included, is sent")
	} else {
		inBase := map[v1.Hash]bool{}
		for _, h := range base.LayerIDs() {
			inBase[h] = true
		}
		omit = func(h v1.Hash) bool { return inBase[h] }
	}
	if req.DryRun {
		res.ImageID = cfgName.String()
		if d.Store == engine.Containerd {
			dg, err := built.Image.Digest()
			if err != nil {
				return nil, err
			}
			res.ImageID = dg.String()
		}
		res.Load.DryRun = true
		return res, nil
	}
	logf("load path: %s", res.Load)

	t = time.Now()
	var progress func(int64)
	if how.Full {
		progress = ro.ProgressFor(built.Image)
	}
	// Loaded under a temporary tag and checked before it takes the
	// project's name: a failed, interrupted or racing load leaves the
	// name as it was and nothing else behind.
	sg, st, err := d.Stage(ctx, built.Image, tag, omit, progress)
	res.Sent = st.Sent
	var cf engine.CheckFailed
	if err != nil && omit != nil && how.Held && errors.As(err, &cf) {
		// A delta the engine took wrongly: it would load and run, but
		// docker save of it would be incomplete. Take the full path.
		if source.Bytesless(base.Image) {
			// Descriptors from a record or the content store, no bytes.
			return nil, fmt.Errorf("the delta load of %s did not give the image expected (%v), and ds01 cannot send base %s whole: its layers are known from %s, their bytes only to the engine; the image was removed. Put the base in ds01's cache (`ds01 base pull %s`) and run again",
				tag, err, req.BaseRef, how.Descriptors, req.BaseRef)
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("the delta load did not give the image expected (%v): it was removed and the whole image sent instead", err))
		res.Load = LoadPath{Kind: LoadFull, Store: d.Store, Why: FullAfterCheck}
		// Assembled again on the base as ds01 has it, whose descriptors
		// are those of the bytes it sends.
		if built, err = assemble.Image(base.Image, files, opts); err != nil {
			return nil, err
		}
		if progress == nil {
			progress = ro.ProgressFor(built.Image)
		}
		sg, st, err = d.Stage(ctx, built.Image, tag, nil, progress)
		res.Sent += st.Sent
	}
	if errors.As(err, &cf) {
		return nil, fmt.Errorf("%w; the image was removed and %s is as it was", err, tag)
	} else if err != nil {
		return nil, err
	}
	step("load", t)
	t = time.Now()
	defer step("verify and record", t)
	if err := sg.Commit(tag); err != nil {
		return nil, err
	}
	res.ImageID = sg.ID
	if req.Records != nil {
		if err := req.Records.Write(RecordFromResult(req, res, time.Now())); err != nil {
			// The record is what image update rebuilds from: without it
			// the image is half made. Take it back.
			sg.Undo(tag, res.Replaced)
			return nil, fmt.Errorf("%w; the image was removed again", err)
		}
	}
	if res.Replaced != "" && res.Replaced != res.ImageID {
		d.RemoveIfOrphan(context.WithoutCancel(ctx), res.Replaced) // done even after Ctrl-C
	}
	return res, nil
}

// RemoveIfOrphan removes an image a rebuild replaced, when no tag and no
// container refer to it any more: the old flow's orphaned images are what
// ds01 exists to end.
func (d *Pipeline) RemoveIfOrphan(ctx context.Context, id string) {
	ins, err := d.ImageInspect(ctx, id)
	if err != nil || len(ins.RepoTags) > 0 {
		return
	}
	cs, err := d.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return
	}
	for _, c := range cs.Items {
		if c.ImageID == id {
			return
		}
	}
	d.ImageRemove(ctx, id, client.ImageRemoveOptions{})
}
