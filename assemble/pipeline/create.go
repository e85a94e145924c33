package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/assemble/record"
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
	Packages packages.Request
	// Asked is what the user asked for, recorded for a later upgrade;
	// empty means Packages (a rebuild installs pins, but records the ask).
	Asked *packages.Request
	// PackageOutput gets the package managers' output.
	PackageOutput io.Writer
	// Env are KEY=VALUE settings for the image (--env).
	Env []string
	// Presets are the package presets asked for, recorded; with jupyter
	// the user's home gets a kernel for the project and a safe server
	// configuration.
	Presets []string
	// Records is where the record of the build is written (see record.Record),
	// as its user; nil writes none.
	Records *record.Records
	// Log gets one line per step when not nil (--verbose).
	Log io.Writer
	// OwnImagesOnly refuses a base that is another user's image (see
	// record.CheckOwnImage), for a caller through sudo.
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
	Packages *packages.Layer
	Labels   map[string]string
	Warnings []string
	Timings  map[string]time.Duration
}

// ErrExists is returned when the project's image exists and Replace is off.
var ErrExists = errors.New("image exists")

// Create assembles the user's image on a base held by the daemon and loads
// it, sending only the new layer and the config. On any failure nothing is
// left behind: no image, no container. It plans first (Plan), and a dry
// run that the plan answers changes nothing further.
func (d *Pipeline) Create(ctx context.Context, req CreateRequest) (*CreateResult, error) {
	p, err := d.Plan(ctx, req)
	if err != nil {
		return nil, err
	}
	res := &CreateResult{Tag: p.Tag, Project: p.Project, Replaced: p.Replaced, Timings: map[string]time.Duration{}}
	if p.Load.Kind == LoadPending {
		res.Load = p.Load
		return res, nil
	}
	r := &run{d: d, req: req, res: res, ro: p.Resolve}
	return r.execute(ctx, p)
}

// run is one execution of a plan: what it has made so far.
type run struct {
	d    *Pipeline
	req  CreateRequest
	res  *CreateResult
	ro   source.ResolveOptions
	base *source.Base
	how  source.Resolution
}

func (r *run) logf(format string, a ...any) {
	if r.req.Log != nil {
		fmt.Fprintf(r.req.Log, format+"\n", a...)
	}
}

func (r *run) step(name string, t time.Time) { r.res.Timings[name] = time.Since(t) }

// execute resolves the base, adds the package layer, assembles the user
// layer and loads the image, in that order.
func (r *run) execute(ctx context.Context, p *Plan) (*CreateResult, error) {
	if err := r.resolve(ctx, p); err != nil {
		return nil, err
	}
	if !r.req.Packages.Empty() {
		if pending, err := r.packages(ctx); err != nil || pending {
			return r.done(err)
		}
	}
	built, err := r.assemble(ctx)
	if err != nil {
		return nil, err
	}
	if r.req.DryRun {
		return r.predict(built)
	}
	return r.load(ctx, built)
}

func (r *run) done(err error) (*CreateResult, error) {
	if err != nil {
		return nil, err
	}
	return r.res, nil
}

// resolve gives the run its base, checked as the caller's when asked: the
// base the plan located, or, when the plan did not locate it, resolved.
func (r *run) resolve(ctx context.Context, p *Plan) error {
	t := time.Now()
	var base *source.Base
	var how source.Resolution
	var err error
	if p.Base.Ref != "" {
		base, how, err = source.Give(ctx, r.d.Docker, p.Base, r.ro)
	} else {
		base, how, err = source.Resolve(ctx, r.d.Docker, r.req.BaseRef, r.ro)
	}
	if err != nil {
		return err
	}
	if r.req.OwnImagesOnly {
		cfg, err := base.Image.ConfigFile()
		if err != nil {
			return err
		}
		if err := record.CheckOwnImage(r.req.BaseRef, cfg.Config.Labels, r.req.Account.UID); err != nil {
			return err
		}
	}
	if how.Notice != "" {
		r.res.Warnings = append(r.res.Warnings, how.Notice)
	}
	r.base, r.how = base, how
	r.res.Base, r.res.Resolution = base, how
	r.step("resolve base", t)
	r.logf("base %s: image %s, %d layers, from the %s", r.req.BaseRef, base.ID, len(base.LayerIDs()), how.From)
	return nil
}

// packages puts the shared package layer on the base; the user layer then
// goes on base + packages, whose files (a new group a package made, say)
// it reads. A dry run stops here: installing is not a dry thing.
func (r *run) packages(ctx context.Context) (pending bool, err error) {
	switch {
	case r.how.Full:
		return false, fmt.Errorf("packages on the containerd image store need the base held under descriptors ds01 knows, and the engine did not keep %s as ds01's cache has it; nothing was changed", r.req.BaseRef)
	case r.req.DryRun:
		r.res.Load = LoadPath{Kind: LoadPending, Store: r.d.Store, DryRun: true, Pending: PendingPackages}
		return true, nil
	}
	t := time.Now()
	pr, err := r.d.Packages.Layer(ctx, r.base, r.req.Packages, packages.Options{Cache: r.ro.Cache, Offline: r.ro.Offline, Output: r.req.PackageOutput, For: r.res.Tag})
	if err != nil {
		return false, err
	}
	r.res.Packages = pr
	r.step("packages", t)
	r.logf("packages: layer %s (%d bytes), %s", pr.DiffID, pr.Size, map[bool]string{true: "shared layer reused, nothing installed", false: "installed now"}[pr.Reused])
	if r.base, err = source.InDaemon(ctx, r.d.Docker, pr.Image); err != nil {
		return false, err
	}
	if r.d.Store == engine.Containerd {
		if !r.base.Described() {
			return false, fmt.Errorf("the package image %s carries no record of its layer descriptors; remove it (docker rmi %s) and build again", pr.Image, pr.Image)
		}
		r.how.Descriptors = source.DescriptorSource{Kind: source.DescPackageImage, Detail: pr.Image}
	}
	return false, nil
}

// files are the base's files the user layer reads: from the cache index,
// from the cached layers when the engine does not hold the base as ds01
// has it, else out of a never-started container.
func (r *run) files(ctx context.Context) (*layers.Files, error) {
	t := time.Now()
	defer r.step("read base files", t)
	if r.req.Cache != nil {
		if files, ok := r.req.Cache.Files(r.base.ID); ok {
			r.logf("base files: from the cache index")
			return files, nil
		}
	}
	var files *layers.Files
	var err error
	switch {
	case r.how.Full:
		files, err = assemble.Files(r.base.Image)
	case r.how.Held:
		files, err = source.FilesFor(ctx, r.d.Docker, r.base.Ref, layers.UserWant, r.res.Tag)
	default:
		files, err = source.FilesFor(ctx, r.d.Docker, r.base.ID, layers.UserWant, r.res.Tag)
	}
	if err != nil {
		return nil, err
	}
	if r.req.Cache != nil {
		if err := r.req.Cache.PutFiles(r.base.ID, files); err != nil {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("could not cache the base's files: %v", err))
		}
	}
	r.logf("base files: copied from a never-started container")
	return files, nil
}

// assembled is the image made in memory, and how to make it again.
type assembled struct {
	img   v1.Image
	files *layers.Files
	opts  assemble.Options
}

// assemble makes the image on the base: labels, user layer, config.
func (r *run) assemble(ctx context.Context) (*assembled, error) {
	files, err := r.files(ctx)
	if err != nil {
		return nil, err
	}
	t := time.Now()
	opts := assemble.Options{Account: r.req.Account, Created: r.req.Created, Labels: r.labels().Encode(), Env: r.req.Env}
	if slices.Contains(r.req.Presets, "jupyter") {
		opts.HomeFiles = assemble.JupyterFiles(r.res.Project)
	}
	deltaBase := r.base.Image
	if r.d.heldDescriptors != nil && !r.how.Full {
		deltaBase = r.d.heldDescriptors(deltaBase)
	}
	built, err := assemble.Image(deltaBase, files, opts)
	if err != nil {
		return nil, err
	}
	r.res.Warnings = append(r.res.Warnings, built.Warnings...)
	r.res.LayerSize, _ = built.UserLayer.Size()
	cfgName, err := built.Image.ConfigName()
	if err != nil {
		return nil, err
	}
	cfg, _ := built.Image.ConfigFile()
	r.res.Labels = maps.Clone(cfg.Config.Labels)
	r.step("assemble", t)
	r.logf("assembled %s: config %s, user layer %d bytes", r.res.Tag, cfgName, r.res.LayerSize)
	r.res.Load = LoadPath{Kind: LoadDelta, Store: r.d.Store, Descriptors: r.how.Descriptors}
	if r.how.Full {
		// On the containerd store a docker-archive without the base's
		// layers is refused or, worse, makes a broken image.
		r.res.Load = LoadPath{Kind: LoadFull, Store: r.d.Store, Why: FullNotHeld}
		r.res.Warnings = append(r.res.Warnings, "the containerd image store did not keep the base under the cached manifest: the whole image, base included, is sent")
	}
	return &assembled{img: built.Image, files: files, opts: opts}, nil
}

// labels are the image's DS01 labels.
func (r *run) labels() label.Image {
	req := r.req
	meta := label.Image{
		UID: req.Account.UID, GID: req.Account.GID, Username: req.Account.Name, Login: req.Login, Project: r.res.Project,
		Base: req.BaseRef, BaseID: r.base.ID, BaseDigest: r.base.Digest(), Version: req.Version, Catalog: req.Catalog,
	}
	if !req.Created.IsZero() {
		s := req.Created.Unix()
		meta.SourceDateEpoch = &s
	}
	if pr := r.res.Packages; pr != nil {
		meta.PackagesApt, meta.PackagesPip, meta.PackagesLayer = pr.Apt, pr.Pip, pr.DiffID.String()
	}
	return meta
}

// predict ends a dry run: the image ID the engine would give.
func (r *run) predict(a *assembled) (*CreateResult, error) {
	id, err := r.d.ExpectedID(a.img)
	if err != nil {
		return nil, err
	}
	r.res.ImageID = id
	r.res.Load.DryRun = true
	return r.res, nil
}

// omit is what the archive leaves out: the base's layers, unless the base
// is sent whole.
func (r *run) omit() func(v1.Hash) bool {
	if r.how.Full {
		return nil
	}
	inBase := map[v1.Hash]bool{}
	for _, h := range r.base.LayerIDs() {
		inBase[h] = true
	}
	return func(h v1.Hash) bool { return inBase[h] }
}

// load sends the image under a temporary tag, checks it, and only then
// gives it the project's name and writes the record: a failed,
// interrupted or racing load leaves the name as it was and nothing else
// behind.
func (r *run) load(ctx context.Context, a *assembled) (*CreateResult, error) {
	r.logf("load path: %s", r.res.Load)
	t := time.Now()
	var progress func(int64)
	if r.how.Full {
		progress = r.ro.ProgressFor(a.img)
	}
	sg, st, err := r.d.Stage(ctx, a.img, r.res.Tag, r.omit(), progress)
	r.res.Sent = st.Sent
	var cf engine.CheckFailed
	if err != nil && !r.how.Full && r.how.Held && errors.As(err, &cf) {
		sg, err = r.sendWhole(ctx, a, err, progress)
	}
	if errors.As(err, &cf) {
		return nil, fmt.Errorf("%w; the image was removed and %s is as it was", err, r.res.Tag)
	} else if err != nil {
		return nil, err
	}
	r.step("load", t)
	return r.commit(ctx, sg)
}

// sendWhole is the fallback of a delta the engine took wrongly (it would
// load and run, but docker save of it would be incomplete): the image is
// assembled again on the base as ds01 has it, whose descriptors are those
// of the bytes it sends, and sent whole.
func (r *run) sendWhole(ctx context.Context, a *assembled, failed error, progress func(int64)) (*engine.Staged, error) {
	if source.Bytesless(r.base.Image) {
		return nil, fmt.Errorf("the delta load of %s did not give the image expected (%v), and ds01 cannot send base %s whole: its layers are known from %s, their bytes only to the engine; the image was removed. Put the base in ds01's cache (`ds01 base pull %s`) and run again",
			r.res.Tag, failed, r.req.BaseRef, r.how.Descriptors, r.req.BaseRef)
	}
	r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("the delta load did not give the image expected (%v): it was removed and the whole image sent instead", failed))
	r.res.Load = LoadPath{Kind: LoadFull, Store: r.d.Store, Why: FullAfterCheck}
	built, err := assemble.Image(r.base.Image, a.files, a.opts)
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = r.ro.ProgressFor(built.Image)
	}
	sg, st, err := r.d.Stage(ctx, built.Image, r.res.Tag, nil, progress)
	r.res.Sent += st.Sent
	return sg, err
}

// commit names the checked image and writes its record; a record that
// cannot be written takes the image back, as image update rebuilds from it.
func (r *run) commit(ctx context.Context, sg *engine.Staged) (*CreateResult, error) {
	t := time.Now()
	defer r.step("verify and record", t)
	if err := sg.Commit(r.res.Tag); err != nil {
		return nil, err
	}
	r.res.ImageID = sg.ID
	if r.req.Records != nil {
		if err := r.req.Records.Write(recordOf(r.req, r.res, time.Now())); err != nil {
			sg.Undo(r.res.Tag, r.res.Replaced)
			return nil, fmt.Errorf("%w; the image was removed again", err)
		}
	}
	if r.res.Replaced != "" && r.res.Replaced != r.res.ImageID {
		r.d.RemoveIfOrphan(context.WithoutCancel(ctx), r.res.Replaced) // done even after Ctrl-C
	}
	return r.res, nil
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

// recordOf is the record of a build.
func recordOf(req CreateRequest, res *CreateResult, now time.Time) record.Record {
	r := record.Record{
		Project: res.Project, Image: res.Tag, ImageID: res.ImageID,
		Login: req.Login, Name: req.Account.Name, UID: req.Account.UID, GID: req.Account.GID,
		Version: req.Version, BuiltAt: now.UTC(),
	}
	r.Base.Ref, r.Base.ID, r.Base.Digest = req.BaseRef, res.Base.ID, res.Base.Digest()
	r.Catalog = req.Catalog
	if !req.Packages.Empty() {
		pk := req.Packages
		if req.Asked != nil {
			pk = *req.Asked
		}
		r.Packages, r.Installed = &pk, res.Packages
	}
	r.Env, r.Presets = req.Env, req.Presets
	if !req.Created.IsZero() {
		s := req.Created.Unix()
		r.SourceDateEpoch = &s
	}
	return r
}
