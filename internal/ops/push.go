package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/registry"
)

// ImagePush is image push's request.
type ImagePush struct {
	Project string
	// To is the repository (a tag may be given; :latest otherwise). Empty
	// is the administrator's default, Ops.PushRepo.
	To string
}

// PushResult says what image push sent where.
type PushResult struct {
	Ref     string
	Digest  string
	ImageID string
	// Sent is the bytes uploaded (blobs the registry lacked, and the
	// manifest); the rest it held or mounted.
	Sent int64
	// Layers say where each layer's bytes came from, base first.
	Layers   []PushedLayer
	Warnings []string
}

// PushedLayer is one layer of a pushed image.
type PushedLayer struct {
	DiffID string
	Size   int64
	// From is where its bytes were taken from, were the registry to lack it.
	From string
	// Mount names the repository of the same registry it is mounted from.
	Mount string `json:",omitempty"`
}

// ErrNoPushRepo is image push without --to where the administrator set
// no default.
var ErrNoPushRepo = errors.New("no repository to push to: give --to REGISTRY/REPO, or have the administrator set DS01_PUSH_REPO (e.g. registry.lab:5000/ds01-{uid}/{project})")

// PushRepo is the repository a push of project by uid goes to: to, or
// the template (`{uid}` and `{project}` replaced), with :latest unless a
// tag is given.
func PushRepo(to, template string, uid uint32, project string) (name.Tag, error) {
	if to == "" {
		to = strings.NewReplacer("{uid}", strconv.FormatUint(uint64(uid), 10), "{project}", project).Replace(template)
	}
	if to == "" {
		return name.Tag{}, ErrNoPushRepo
	}
	t, err := name.NewTag(to)
	if err != nil {
		return name.Tag{}, fmt.Errorf("%q is not a repository to push to (registry/repository[:tag]): %w", to, err)
	}
	return t, nil
}

// pushTemplate is the administrator's default repository: Ops.PushRepo,
// else DS01_PUSH_REPO of this process (through the service, the
// service's environment, never the caller's).
func (o *Ops) pushTemplate() string {
	if o.PushRepo != "" {
		return o.PushRepo
	}
	return os.Getenv("DS01_PUSH_REPO")
}

// PushImage sends id's image of a project to a registry, complete and
// identical to the local one (same config, so the same image ID on a
// graphdriver engine), sending only the blobs the registry lacks. The
// layers' bytes come without a docker save of the image: the user layer
// is assembled again from the record, the package layer is ds01's cache's,
// the base's are the cache's or its registry's (mounted when that is the
// same registry), or read out of the engine once.
func (o *Ops) PushImage(ctx context.Context, id identity.Identity, r ImagePush, ev Events) (*PushResult, error) {
	tag, project, err := label.ImageName(id.UID, r.Project)
	if err != nil {
		return nil, err
	}
	dst, err := PushRepo(r.To, o.pushTemplate(), id.UID, project)
	if err != nil {
		return nil, err
	}
	unlock, err := o.Lock(ctx, id, project, ev)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, err := o.pushableRecord(id, project)
	if err != nil {
		return nil, err
	}
	ins, err := o.D.ImageInspect(ctx, tag)
	if err != nil {
		return nil, fmt.Errorf("%s: no such image of yours (ds01 image list shows them): %w", tag, err)
	}
	re, err := o.remake(ctx, id, rec, tag, ins.ID, ins.RootFS.Layers, ev)
	if err != nil {
		return nil, err
	}
	res := &PushResult{Ref: dst.Name(), ImageID: ins.ID}
	img, err := o.pushable(ctx, id, rec, re, dst, res, ev)
	if err != nil {
		return nil, err
	}
	if res.Sent, err = push(ctx, img, dst, id, ev); err != nil {
		return nil, err
	}
	dg, err := img.Digest()
	if err != nil {
		return nil, err
	}
	res.Digest = dg.String()
	return res, o.notePushed(id, project, record.Pushed{Repo: dst.Context().String(), Digest: res.Digest, At: time.Now().UTC(), ImageID: res.ImageID})
}

// pushableRecord is the project's record, which a push makes the image
// again from; an image with layers saved by container retire --save
// cannot be made again, and the engine would give them only by a docker
// save of the whole image.
func (o *Ops) pushableRecord(id identity.Identity, project string) (record.Record, error) {
	recs, err := o.Records(id)
	if err != nil {
		return record.Record{}, err
	}
	defer recs.Close()
	rec, err := recs.Read(project)
	if errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("no record of how %s was made in %s; ds01 pushes what it can make again from its record: make it with `ds01 image create %s --base REF`", project, recs.Dir(), project)
	} else if err != nil {
		return rec, err
	}
	if err := rec.Check(id.UID, id.GID); err != nil {
		return rec, fmt.Errorf("%s: %w; make the image again with `ds01 image create %s --force`", recs.Path(project), err, project)
	}
	if len(rec.Saved) > 0 {
		return rec, fmt.Errorf("%s holds %d layer(s) saved by container retire --save: ds01 cannot make them again from the record, and the engine gives them only by a docker save of the whole image, which ds01 does not do; push it with `docker push` (docker group), or rebuild without them (`ds01 image update %s --discard-saved`) and push that", rec.Image, len(rec.Saved), project)
	}
	return rec, nil
}

// remake makes the image again from its record and checks it is the
// local one. Packages are asked for as image create asked for them (the
// package image of that request holds the files the user layer read),
// and, failing that, pinned as image update asks for them.
func (o *Ops) remake(ctx context.Context, id identity.Identity, rec record.Record, tag, localID string, local []string, ev Events) (*pipeline.Reassembled, error) {
	var err error
	for _, asked := range []bool{true, false} {
		if !asked && rec.Installed == nil {
			break
		}
		var re *pipeline.Reassembled
		if re, err = o.reassemble(ctx, id, rec.Project, asked, ev); err != nil {
			return nil, fmt.Errorf("making %s again from its record, to push it: %w", tag, err)
		}
		if err = sameImage(o.D.Docker, tag, rec.Project, localID, local, re); err == nil {
			return re, nil
		}
	}
	return nil, err
}

// reassemble makes id's image of project again from its record, offline:
// the base and the package layer are those here.
func (o *Ops) reassemble(ctx context.Context, id identity.Identity, project string, asked bool, ev Events) (*pipeline.Reassembled, error) {
	c, err := o.fromRecord(id, project, ImageUpdate{Offline: true, UpgradePackages: asked}, ev)
	if err != nil {
		return nil, err
	}
	req := pipeline.CreateRequest{
		Project: c.Project, BaseRef: c.BaseRef, Catalog: c.Catalog, Created: c.Created,
		Packages: c.Packages, Asked: c.Asked, Env: c.Env, Presets: c.Presets,
		Resolve: source.ResolveOptions{Offline: true},
	}
	if err := o.fill(id, &req, ev); err != nil {
		return nil, err
	}
	req.Records.Close()
	req.Records = nil
	return o.D.Images.Reassemble(ctx, req)
}

// sameImage refuses to push what is not the local image: the layers made
// again must be the image's, and so must the config.
func sameImage(d *engine.Docker, tag, project, localID string, local []string, re *pipeline.Reassembled) error {
	cfg, err := re.Image.ConfigFile()
	if err != nil {
		return err
	}
	var made []string
	for _, h := range cfg.RootFS.DiffIDs {
		made = append(made, h.String())
	}
	rebuild := fmt.Sprintf("rebuild it with `ds01 image update %s` and push again", project)
	switch {
	case len(made) != len(local):
		return fmt.Errorf("%s has %d layers, and its record makes %d: it was changed since ds01 made it; %s", tag, len(local), len(made), rebuild)
	case made[len(made)-1] != local[len(local)-1]:
		return fmt.Errorf("the user layer made again from the record of %s is %s, and the image's is %s (another ds01 version, or a changed base file index?): ds01 pushes only bytes it can show are the image's; %s", tag, made[len(made)-1], local[len(local)-1], rebuild)
	case !slices.Equal(made, local):
		return fmt.Errorf("the base of %s is not the one its record names as the engine holds it now (the base's tag moved?); %s", tag, rebuild)
	}
	want, err := d.ExpectedID(re.Image)
	if err != nil {
		return err
	}
	if want != localID {
		return fmt.Errorf("the config made again from the record of %s gives image %s, and the image is %s (its labels or environment differ from the record); %s", tag, want, localID, rebuild)
	}
	return nil
}

// notePushed adds a push to the project's record, as the user.
func (o *Ops) notePushed(id identity.Identity, project string, p record.Pushed) error {
	recs, err := o.Records(id)
	if err != nil {
		return err
	}
	defer recs.Close()
	rec, err := recs.Read(project)
	if err != nil {
		return err
	}
	rec.Pushed = append(rec.Pushed, p)
	if len(rec.Pushed) > maxPushes {
		rec.Pushed = rec.Pushed[len(rec.Pushed)-maxPushes:]
	}
	if err := recs.Write(rec); err != nil {
		return fmt.Errorf("pushed %s@%s, but: %w", p.Repo, p.Digest, err)
	}
	return nil
}

// maxPushes keeps a record small: the latest pushes are what matter.
const maxPushes = 20

// push writes img to dst with id's credentials, telling progress, and
// returns the bytes uploaded.
func push(ctx context.Context, img v1.Image, dst name.Tag, id identity.Identity, ev Events) (int64, error) {
	kc, err := keychain(id)
	if err != nil {
		return 0, err
	}
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last int64
		for u := range updates {
			if ev.LoadProgress != nil && u.Complete > last {
				ev.LoadProgress(u.Total, u.Complete-last)
			}
			last = max(last, u.Complete)
		}
	}()
	sent, err := registry.PushWithProgress(ctx, img, dst.Name(), registry.PullOptions{Keychain: kc}, updates)
	<-done
	return sent, err
}

// mountable makes ls mountable from base's repository when it is in the
// registry pushed to: the registry links the blobs across repositories
// rather than receiving them.
func mountable(ls []v1.Layer, baseRef string, dst name.Tag) ([]v1.Layer, string) {
	br, err := name.ParseReference(baseRef)
	if err != nil || br.Context().RegistryStr() != dst.Context().RegistryStr() {
		return ls, ""
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = &remote.MountableLayer{Layer: l, Reference: br}
	}
	return out, br.Context().String()
}
