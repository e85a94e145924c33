package ops

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/registry"
)

// ImagePull is image pull's request.
type ImagePull struct {
	Ref string
	// Project names the image here; empty: the project its labels name.
	Project string
	// Force replaces an image of the project here, and re-assembles an
	// image set up for another user for the caller.
	Force bool
}

// PullResult says what image pull took and how.
type PullResult struct {
	Tag, Project, ImageID string
	// Digest is the manifest pulled.
	Digest string
	Layers int
	// Held is how many of its layers the engine already had (the base),
	// which were not downloaded; Downloaded the bytes that were.
	Held       int
	Downloaded int64
	Sent       int64
	// Reassembled is set when the image was set up for another user and
	// --force made it again for the caller on it as a base.
	Reassembled *pipeline.CreateResult `json:",omitempty"`
	// Replaced is the image of the project that --force replaced (and
	// removed, unless something else uses it).
	Replaced string `json:",omitempty"`
	Warnings []string
}

// ErrNotDS01Image is image pull of an image without a user setup.
var ErrNotDS01Image = errors.New("not a ds01 image")

// PullImage takes id's image from a registry into the engine as
// ds01-{UID}/PROJECT:latest, downloading only the layers whose chain the
// engine lacks (the base is never downloaded when the engine holds it),
// and writes its record as id.
func (o *Ops) PullImage(ctx context.Context, id identity.Identity, r ImagePull, ev Events) (*PullResult, error) {
	if _, err := registry.ParseRef(r.Ref); err != nil {
		return nil, err
	}
	kc, err := keychain(id)
	if err != nil {
		return nil, err
	}
	rm, err := registry.OpenRemote(ctx, r.Ref, registry.PullOptions{Keychain: kc})
	if err != nil {
		return nil, err
	}
	im, has := label.DecodeImage(rm.Config.Config.Labels)
	if !has {
		return nil, fmt.Errorf("%s: %w (it carries no DS01 user setup labels); it is a base: build your image on it with `ds01 image create PROJECT --base %s`", r.Ref, ErrNotDS01Image, r.Ref)
	}
	project := r.Project
	if project == "" {
		project = im.Project
	}
	if project == "" {
		return nil, fmt.Errorf("%s names no project in its labels; give one with --project", r.Ref)
	}
	if im.UID != id.UID || im.GID != id.GID {
		return o.pullForeign(ctx, id, r, im, project, ev)
	}
	tag, project, err := label.ImageName(id.UID, project)
	if err != nil {
		return nil, err
	}
	unlock, err := o.Lock(ctx, id, project, ev)
	if err != nil {
		return nil, err
	}
	defer unlock()
	res := &PullResult{Tag: tag, Project: project, Digest: rm.Digest.String(), Layers: len(rm.Config.RootFS.DiffIDs)}
	replaced, err := o.pullReplaces(ctx, tag, project, rm, r.Force)
	if err != nil {
		return nil, err
	}
	omit, err := o.heldLayers(ctx, rm, im, res, ev)
	if err != nil {
		return nil, err
	}
	sg, st, err := o.D.Stage(ctx, rm.Image, tag, omit, nil)
	res.Sent, res.Downloaded = st.Sent, rm.Fetched.Load()
	if err != nil {
		return nil, fmt.Errorf("loading %s as %s: %w", r.Ref, tag, err)
	}
	if err := sg.Commit(tag); err != nil {
		return nil, err
	}
	res.ImageID = sg.ID
	if err := o.recordPulled(id, res, rm, im); err != nil {
		sg.Undo(tag, replaced)
		return nil, fmt.Errorf("%w; the image was removed again", err)
	}
	if replaced != "" && replaced != sg.ID {
		// As a rebuild does: the image --force replaced goes when nothing
		// else uses it, not left behind as an untagged 18 GB orphan.
		o.D.Images.RemoveIfOrphan(context.WithoutCancel(ctx), replaced)
		res.Replaced = replaced
	}
	return res, nil
}

// pullForeign is image pull of an image set up for another UID/GID:
// refused, or with --force made again for the caller on it (an image
// create with it as the base, under every rule of one: through sudo or
// the service another user's image stays refused as a base).
func (o *Ops) pullForeign(ctx context.Context, id identity.Identity, r ImagePull, im label.Image, project string, ev Events) (*PullResult, error) {
	if !r.Force {
		return nil, fmt.Errorf("%s: %w: it is set up for UID/GID %d:%d, and you are %d:%d; ds01 pulls an image as it is only for its own user: make it yours with `ds01 image pull %s --force` (its user layer is assembled again for you on it), or ask its owner for the base it was built on",
			r.Ref, record.ErrOtherUser, im.UID, im.GID, id.UID, id.GID, r.Ref)
	}
	cr, err := o.CreateImage(ctx, id, ImageCreate{Project: project, BaseRef: r.Ref, Force: true}, ev)
	if err != nil {
		return nil, fmt.Errorf("re-assembling %s for you: %w", r.Ref, err)
	}
	return &PullResult{Tag: cr.Tag, Project: cr.Project, ImageID: cr.ImageID, Reassembled: cr, Warnings: cr.Warnings}, nil
}

// pullReplaces is the image the tag points at now, which the pull
// replaces only with force (or when it is the same image).
func (o *Ops) pullReplaces(ctx context.Context, tag, project string, rm *registry.Remote, force bool) (string, error) {
	old, err := o.D.ImageInspect(ctx, tag)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("inspecting %s: %w", tag, err)
	}
	want, err := o.D.ExpectedID(rm.Image)
	if err != nil {
		return "", err
	}
	if old.ID != want && !force {
		return "", fmt.Errorf("%s: %w (made %s from %s); pull under another name with --project NAME, or replace it with --force", tag, pipeline.ErrExists, old.Created, old.Config.Labels[label.Base])
	}
	return old.ID, nil
}

// recordPulled writes the record of a pulled image as the user: the
// inputs its labels name, and where it came from.
func (o *Ops) recordPulled(id identity.Identity, res *PullResult, rm *registry.Remote, im label.Image) error {
	now := time.Now().UTC()
	rec := record.Record{
		Project: res.Project, Image: res.Tag, ImageID: res.ImageID, Catalog: im.Catalog,
		Login: id.Login, Name: im.Username, UID: id.UID, GID: id.GID, SourceDateEpoch: im.SourceDateEpoch,
		Version: im.Version, BuiltAt: now,
		Pulled: &record.Pushed{Repo: rm.Repo.String(), Digest: rm.Digest.String(), At: now, ImageID: res.ImageID},
	}
	rec.Base.Ref, rec.Base.ID, rec.Base.Digest = im.Base, im.BaseID, im.BaseDigest
	if im.PackagesLayer != "" {
		rec.Packages = &packages.Request{Apt: im.PackagesApt, Pip: im.PackagesPip}
	}
	if err := rec.Check(id.UID, id.GID); err != nil {
		return fmt.Errorf("the labels of %s@%s do not make a record ds01 would accept: %w", rm.Repo, rm.Digest, err)
	}
	recs, err := o.Records(id)
	if err != nil {
		return err
	}
	defer recs.Close()
	return recs.Write(rec)
}

// heldLayers is what the load leaves out: the longest run of the
// image's first layers whose chain the engine holds. On the containerd
// store a layer is left out only where the pulled manifest names it as
// the engine holds it.
func (o *Ops) heldLayers(ctx context.Context, rm *registry.Remote, im label.Image, res *PullResult, ev Events) (func(v1.Hash) bool, error) {
	want := rm.Config.RootFS.DiffIDs
	n, holder := o.heldPrefix(ctx, want, im)
	if n == 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the engine holds none of the layers of %s: all %d are downloaded", rm.Repo, len(want)))
		return nil, nil
	}
	omit := map[v1.Hash]bool{}
	for _, h := range want[:n] {
		omit[h] = true
	}
	if o.D.Store == engine.Containerd {
		if err := o.sameDescriptors(ctx, rm, holder, n, omit, res, ev); err != nil {
			return nil, err
		}
	}
	res.Held = len(omit)
	return func(h v1.Hash) bool { return omit[h] }, nil
}

// heldPrefix is how many of the first layers of want the engine holds
// the chain of, and an image that holds them: the base the labels name
// first, else any image.
func (o *Ops) heldPrefix(ctx context.Context, want []v1.Hash, im label.Image) (int, string) {
	best, holder := 0, ""
	consider := func(ref string) {
		ins, err := o.D.ImageInspect(ctx, ref)
		if err != nil {
			return
		}
		if n := commonPrefix(ins.RootFS.Layers, want); n > best {
			best, holder = n, ins.ID
		}
	}
	for _, ref := range []string{im.BaseID, im.Base} {
		if ref != "" {
			consider(ref)
		}
	}
	if best >= len(want)-1 {
		return best, holder
	}
	for _, ref := range o.imageIDs(ctx) {
		consider(ref)
	}
	return best, holder
}

// maxScan bounds the images a pull inspects looking for its base.
const maxScan = 500

func (o *Ops) imageIDs(ctx context.Context) []string {
	l, err := o.D.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil
	}
	var ids []string
	for i, s := range l.Items {
		if i >= maxScan {
			break
		}
		ids = append(ids, s.ID)
	}
	return ids
}

func commonPrefix(have []string, want []v1.Hash) int {
	n := 0
	for n < len(have) && n < len(want) && have[n] == want[n].String() {
		n++
	}
	return n
}

// sameDescriptors keeps in omit only the held layers the pulled manifest
// names by the descriptors the containerd store holds them under; the
// others are downloaded, and that is said.
func (o *Ops) sameDescriptors(ctx context.Context, rm *registry.Remote, holder string, n int, omit map[v1.Hash]bool, res *PullResult, ev Events) error {
	held, err := o.heldDescriptors(ctx, holder)
	m, merr := rm.Image.Manifest()
	if merr != nil {
		return merr
	}
	differ := 0
	for i := 0; i < n; i++ {
		if err != nil || i >= len(held) || held[i].Digest != m.Layers[i].Digest || held[i].MediaType != m.Layers[i].MediaType {
			delete(omit, rm.Config.RootFS.DiffIDs[i])
			differ++
		}
	}
	if differ > 0 {
		w := fmt.Sprintf("the containerd image store holds %d of the layers of %s under other descriptors than its manifest names (or ds01 cannot tell which), so they are downloaded: a manifest naming them otherwise would load, but docker save of it would leave them out", differ, rm.Repo)
		res.Warnings = append(res.Warnings, w)
	}
	return nil
}

// heldDescriptors are the layer descriptors the containerd store holds
// the image holder under, from the first of source's Describers that
// knows them.
func (o *Ops) heldDescriptors(ctx context.Context, holder string) ([]v1.Descriptor, error) {
	ins, err := o.D.ImageInspect(ctx, holder)
	if err != nil {
		return nil, err
	}
	cache, err := o.Cache()
	if err != nil {
		return nil, err
	}
	ro := source.ResolveOptions{Cache: cache}
	b, _, ok := source.Describe(ctx, source.Held{Ref: holder, Inspect: ins}, source.Describers(o.D.Docker, ro), ro)
	if !ok {
		return nil, source.ErrUnknown
	}
	m, err := b.Image.Manifest()
	if err != nil {
		return nil, err
	}
	return m.Layers, nil
}
