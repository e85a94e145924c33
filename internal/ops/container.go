package ops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
)

// ContainerDeploy is container deploy's request; the rules of who may ask
// for what (host IPC, a cgroup parent, the setuid risk, pins) are applied
// here from the identity, not taken from the request.
type ContainerDeploy struct {
	Name, Image                 string
	GPUs, ShmSize, CgroupParent string
	IPCHost                     bool
	Memlock                     int64
	Workspace, Data, Models     string
	Start, Force, DryRun        bool
	AcceptSetuidRisk            bool
}

// DeployContainer makes id's container NAME._.UID, under the project's
// lock (none for a dry run).
func (o *Ops) DeployContainer(ctx context.Context, id identity.Identity, r ContainerDeploy, ev Events) (*deploy.DeployResult, error) {
	req := deploy.DeployRequest{
		Login: id.Login, Account: id.Account(), Name: r.Name, Image: r.Image,
		GPUs: r.GPUs, ShmSize: r.ShmSize, CgroupParent: r.CgroupParent, IPCHost: r.IPCHost, Memlock: r.Memlock,
		Workspace: r.Workspace, Data: r.Data, Models: r.Models,
		Start: r.Start, Force: r.Force, DryRun: r.DryRun,
		Cred: id.Cred(), Root: id.Root, SetuidRule: id.ActsForUser(), AcceptSetuidRisk: r.AcceptSetuidRisk,
		// A user who could swap a bound path before a later start gets
		// pins instead of paths (an account the host does not know has no
		// files to swap).
		Pin:           id.ActsForUser() && id.Known,
		OwnImagesOnly: !id.Root && id.ActsForUser(),
	}
	if o.Limits != nil && !Everyone(id) {
		req.Limits = o.Limits(id)
	}
	grant, err := o.gpuGrant(ctx, id, r.GPUs, ev)
	if err != nil {
		return nil, err
	}
	req.GrantGPUs = grant
	if req.CgroupParent == "" {
		slice, err := o.slice(id)
		if err != nil {
			return nil, err
		}
		req.CgroupParent = slice
	}
	if req.Workspace == "" {
		home, err := HomeOf(id)
		if err != nil {
			return nil, fmt.Errorf("%w; give the workspace with --workspace DIR", err)
		}
		req.Home = home
	}
	if err := o.fill(id, &req.Assemble, ev); err != nil {
		return nil, err
	}
	defer req.Assemble.Records.Close()
	if !req.DryRun {
		unlock, err := o.Lock(ctx, id, r.Name, ev)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	return o.D.Deploy(ctx, req)
}

// ListContainers are id's containers, or with all every user's (root
// itself only).
func (o *Ops) ListContainers(ctx context.Context, id identity.Identity, all bool) ([]deploy.ContainerInfo, error) {
	uid := &id.UID
	if all {
		if err := RootOnly(id, "--all lists every user's containers and is for root only; ds01 container list shows yours"); err != nil {
			return nil, err
		}
		uid = nil
	}
	return o.D.ListContainers(ctx, uid)
}

// Own is id's container called name. Acting for a user, a container is
// theirs by the ds01.user_id label ds01 wrote when it made it, never by
// its name alone.
func (o *Ops) Own(ctx context.Context, id identity.Identity, name string) (container.InspectResponse, error) {
	c, err := o.D.OwnContainer(ctx, name, id.UID)
	if err != nil {
		return c, err
	}
	if id.ActsForUser() && c.Config.Labels[label.UserID] != strconv.FormatUint(uint64(id.UID), 10) {
		return container.InspectResponse{}, fmt.Errorf("container %s is not yours: ds01 did not make it for UID %d (its %s label says so); ask an administrator to remove it", strings.TrimPrefix(c.Name, "/"), id.UID, label.UserID)
	}
	return c, nil
}

// ContainerRetire is container retire's request.
type ContainerRetire struct {
	Name string
	// Save puts the container's changes into the project's image first.
	Save bool
}

// Retired says what container retire did.
type Retired struct {
	Container string
	// Saved is the layer --save put into the image; nil when there was
	// nothing worth saving or no --save.
	Saved *deploy.SaveResult
	// NothingToSave is set when --save found no changes worth saving.
	NothingToSave bool
}

// RetireContainer removes id's container, saving its changes first when
// asked; a failed save leaves the container as it is.
func (o *Ops) RetireContainer(ctx context.Context, id identity.Identity, r ContainerRetire, ev Events) (*Retired, error) {
	c, err := o.Own(ctx, id, r.Name)
	if err != nil {
		return nil, err
	}
	res := &Retired{Container: strings.TrimPrefix(c.Name, "/")}
	if r.Save {
		if res.Saved, err = o.save(ctx, id, r.Name, c, ev); err != nil {
			return nil, err
		}
		res.NothingToSave = res.Saved == nil
	}
	if err := o.D.Retire(ctx, c.ID); err != nil {
		return nil, fmt.Errorf("retiring %s: %w", res.Container, err)
	}
	if res.Saved != nil {
		o.D.Images.RemoveIfOrphan(ctx, res.Saved.Previous)
	}
	return res, nil
}

// save puts the container's changes into the user's image of the
// project (a container made from some other image gets one) and notes
// the layer in the project's record.
func (o *Ops) save(ctx context.Context, id identity.Identity, name string, c container.InspectResponse, ev Events) (*deploy.SaveResult, error) {
	cname := strings.TrimPrefix(c.Name, "/")
	tag := c.Config.Image
	if !strings.HasPrefix(tag, label.UserRepo(id.UID)) {
		tag = label.Tag(id.UID, name)
	}
	project, _ := label.ProjectOf(id.UID, tag)
	unlock, err := o.Lock(ctx, id, project, ev)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// The home inside the image, whose .cache is left out.
	saved, err := o.D.SaveChanges(ctx, c, tag, "/home/"+id.Name)
	if err != nil {
		return nil, fmt.Errorf("saving the changes of %s (the container was left as it is): %w", cname, err)
	}
	if saved == nil {
		return nil, nil
	}
	for _, w := range saved.Warnings {
		ev.warn("%s", w)
	}
	if err := o.recordSave(id, cname, saved); err != nil {
		return nil, fmt.Errorf("saved %s into %s, but its record could not note it (image update would then drop the saved layer without asking; the container was left as it is): %w", cname, saved.Tag, err)
	}
	return saved, nil
}

// recordSave notes a saved layer in the record of the project whose image
// received it, so that image update knows a rebuild would drop it. A
// project without a record (an image made some other way) has nothing to
// note it in.
func (o *Ops) recordSave(id identity.Identity, container string, s *deploy.SaveResult) error {
	project, ok := label.ProjectOf(id.UID, s.Tag)
	if !ok {
		return nil
	}
	recs, err := o.Records(id)
	if err != nil {
		return err
	}
	defer recs.Close()
	rec, err := recs.Read(project)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	rec.ImageID = s.ImageID
	rec.Saved = append(rec.Saved, record.SavedLayer{Container: container, DiffID: s.Layer.String(), Paths: len(s.Paths), Bytes: s.Bytes, At: time.Now().UTC()})
	return recs.Write(rec)
}

// OpenContainer starts id's container when it is stopped (pinning its
// bind sources again, and refusing when its GPUs went to another container
// while it was stopped: GuardStart) and returns it, for the caller to exec
// a shell in: the interactive part is the docker CLI's, or the service's
// attach.
func (o *Ops) OpenContainer(ctx context.Context, id identity.Identity, name string) (container.InspectResponse, error) {
	c, err := o.Own(ctx, id, name)
	if err != nil {
		return c, err
	}
	if c.State == nil || !c.State.Running {
		done, err := o.GuardStart(ctx, c.ID, strings.TrimPrefix(c.Name, "/"), c.Config.Labels)
		if err != nil {
			return c, err
		}
		defer done()
		if err := o.D.StartOwn(ctx, c, id.Cred()); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Shell is the command that opens a shell in c as id: docker exec as the
// user, in /workspace, a login shell, or the login shell running command.
func Shell(id identity.Identity, c container.InspectResponse, tty bool, command ...string) []string {
	flag := "-i"
	if tty {
		flag = "-it"
	}
	args := []string{"docker", "exec", flag, "-u", fmt.Sprintf("%d:%d", id.UID, id.GID), "-w", "/workspace", strings.TrimPrefix(c.Name, "/"), "bash", "-l"}
	if len(command) > 0 {
		// Quoted for bash -c, so that the words arrive as given.
		q := make([]string, len(command))
		for i, w := range command {
			q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		args = append(args, "-c", strings.Join(q, " "))
	}
	return args
}

// slice is the cgroup parent of id's containers: the policy's template
// when the service has one, else ds01-{name}.slice; either only when the
// host has that slice (an administrator makes the slices, with their
// CPU and memory shares).
func (o *Ops) slice(id identity.Identity) (string, error) {
	if o.Slice == nil {
		return deploy.UserSlice(id.Name), nil
	}
	s, err := o.Slice(id)
	if err != nil || !deploy.HostHasSlice(s) {
		return "", err
	}
	return s, nil
}
