package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/termsafe"
)

// ownContainer is where retire and open start: the user, the daemon and
// the user's container called NAME.
func ownContainer(ctx context.Context, cmd *cli.Command) (string, identity.Identity, *deploy.Daemon, container.InspectResponse, error) {
	var c container.InspectResponse
	name, err := oneArg(cmd, "NAME")
	if err != nil {
		return "", identity.Identity{}, nil, c, err
	}
	id, d, err := imageSetup(ctx, cmd)
	if err != nil {
		return "", id, nil, c, err
	}
	c, err = d.OwnContainer(ctx, name, id.UID)
	if err != nil {
		d.Close()
		return "", id, nil, c, err
	}
	return name, id, d, c, nil
}

func runContainerDeploy(ctx context.Context, cmd *cli.Command) error {
	name, err := oneArg(cmd, "NAME")
	if err != nil {
		return err
	}
	if _, _, err := label.ImageName(0, name); err != nil {
		return usagef("container name %q: use lowercase letters, digits, and '.', '_' or '-' between them", name)
	}
	if g := cmd.String("gpus"); g != "" {
		if _, err := deploy.ParseGPUs(g); err != nil {
			return usageError{err}
		}
	}
	id, d, err := imageSetup(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	req := deploy.DeployRequest{
		Login: id.Login, Account: id.Account(), Name: name, Image: cmd.String("image"),
		GPUs: cmd.String("gpus"), ShmSize: cmd.String("shm-size"), CgroupParent: cmd.String("cgroup-parent"),
		Workspace: cmd.String("workspace"), Data: cmd.String("data"), Models: cmd.String("models"),
		Start: cmd.Bool("start"), Force: cmd.Bool("force"), DryRun: cmd.Bool("dry-run"),
		Cred: id.Cred(), Root: id.Root, SetuidRule: id.ActsForUser(), AcceptSetuidRisk: cmd.Bool("accept-setuid-risk"),
		// A user who could swap a bound path before a later start gets
		// pins instead of paths (an account the host does not know has no
		// files to swap).
		Pin:           id.ActsForUser() && id.Known,
		OwnImagesOnly: !id.Root && id.ActsForUser(),
	}
	switch ipc := cmd.String("ipc"); ipc {
	case "", "private":
	case "host":
		req.IPCHost = true
	default:
		return usagef("--ipc %q: give private (the default) or host (root only)", ipc)
	}
	if req.IPCHost && req.ShmSize != "" {
		return usagef("--shm-size sizes the container's own /dev/shm, and --ipc host uses the host's: give one")
	}
	if m := cmd.String("memlock"); m != "unlimited" {
		n, err := units.RAMInBytes(m)
		if err != nil || n <= 0 {
			return usagef("--memlock %q: give unlimited or a size like 8m", m)
		}
		req.Memlock = n
	}
	if !cmd.IsSet("cgroup-parent") {
		req.CgroupParent = deploy.UserSlice(id.Name)
	}
	if req.Workspace == "" {
		home, err := homeOf(id)
		if err != nil {
			return fmt.Errorf("%w; give the workspace with --workspace DIR", err)
		}
		req.Home = home
	}
	if err := fillBuild(cmd, id, &req.Assemble); err != nil {
		return err
	}
	if !req.DryRun {
		unlock, err := lockProject(ctx, cmd, id, name)
		if err != nil {
			return err
		}
		defer unlock()
	}
	res, err := d.Deploy(ctx, req)
	if err != nil {
		if errors.Is(err, deploy.ErrOtherUser) {
			return cli.Exit(err.Error(), exitFailure)
		}
		return err
	}
	out := cmd.Root().Writer
	if req.DryRun {
		fmt.Fprintf(out, "# flow: %s\n", res.Flow)
		return writeJSON(out, res.Create)
	}
	fmt.Fprintf(out, "flow: %s\n", res.Flow)
	if res.Assembled != nil {
		fmt.Fprintf(out, "assembled %s  %s (sent %d bytes)\n", res.Assembled.Tag, res.Assembled.ImageID, res.Assembled.Sent)
	}
	state := "created"
	if res.Started {
		state = "created and started"
	}
	fmt.Fprintf(out, "%s %s from %s; workspace %s\nopen it with: ds01 container open %s\n", res.Container, state, res.Image, res.Sources.Workspace.Path, name)
	return nil
}

func runContainerList(ctx context.Context, cmd *cli.Command) error {
	id, d, err := imageSetup(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	uid := &id.UID
	if cmd.Bool("all") {
		if !id.Root {
			return usagef("--all lists every user's containers and is for root only")
		}
		uid = nil
	}
	cs, err := d.ListContainers(ctx, uid)
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	if cmd.Bool("json") {
		return writeJSON(out, cs)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIMAGE\tSTATUS\tGPUS\tCREATED\tWORKSPACE")
	for _, c := range cs {
		l := termsafe.Line // names, images and paths other users and bases chose
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l(c.Name), l(c.Image), l(c.Status), l(c.GPUs), c.Created.Format("2006-01-02 15:04"), l(c.Workspace))
	}
	return tw.Flush()
}

func runContainerRetire(ctx context.Context, cmd *cli.Command) error {
	name, id, d, c, err := ownContainer(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	out := cmd.Root().Writer
	cname := strings.TrimPrefix(c.Name, "/")
	var saved *deploy.SaveResult
	if cmd.Bool("save") {
		// Saved into the user's image of the project; a container made
		// from some other image gets one.
		tag := c.Config.Image
		if !strings.HasPrefix(tag, label.UserRepo(id.UID)) {
			tag = label.Tag(id.UID, name)
		}
		unlock, err := lockProject(ctx, cmd, id, projectOf(tag))
		if err != nil {
			return err
		}
		defer unlock()
		saved, err = d.SaveChanges(ctx, c, tag, "/home/"+id.Name)
		if err != nil {
			return fmt.Errorf("saving the changes of %s (the container was left as it is): %w", cname, err)
		}
		if saved == nil {
			fmt.Fprintf(out, "%s has no changes worth saving outside /workspace, /tmp and caches\n", cname)
		} else {
			fmt.Fprintf(out, "saved %d paths (%s of file contents) of %s into %s  %s\n", len(saved.Paths), humanSize(saved.Bytes), cname, saved.Tag, saved.ImageID)
			for _, w := range saved.Warnings {
				fmt.Fprintln(cmd.Root().ErrWriter, "warning:", w)
			}
			if cmd.Bool("verbose") {
				for _, p := range saved.Paths {
					fmt.Fprintf(out, "  /%s\n", p)
				}
			}
			if err := recordSave(id, cname, saved); err != nil {
				return fmt.Errorf("saved %s into %s, but its record could not note it (image update would then drop the saved layer without asking; the container was left as it is): %w", cname, saved.Tag, err)
			}
		}
	}
	if err := d.Retire(ctx, c.ID); err != nil {
		return fmt.Errorf("retiring %s: %w", cname, err)
	}
	if saved != nil {
		d.Images.RemoveIfOrphan(ctx, saved.Previous)
	}
	fmt.Fprintf(out, "retired %s\n", cname)
	return nil
}

// recordSave notes a saved layer in the record of the project whose image
// received it, so that image update knows a rebuild would drop it. A
// project without a record (an image made some other way) has nothing to
// note it in.
func recordSave(id identity.Identity, container string, s *deploy.SaveResult) error {
	project, ok := label.ProjectOf(id.UID, s.Tag)
	if !ok {
		return nil
	}
	recs, err := openRecords(id)
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
	rec.Saved = append(rec.Saved, pipeline.SavedLayer{Container: container, DiffID: s.Layer.String(), Paths: len(s.Paths), Bytes: s.Bytes, At: time.Now().UTC()})
	return recs.Write(rec)
}

func runContainerOpen(ctx context.Context, cmd *cli.Command) error {
	_, id, d, c, err := ownContainer(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	if c.State == nil || !c.State.Running {
		if err := d.StartOwn(ctx, c, id.Cred()); err != nil {
			return err
		}
	}
	// The interactive part is the docker CLI's: it handles the TTY, raw
	// mode and resizes better than anything ds01 would rewrite.
	docker, err := exec.LookPath("docker")
	if err != nil {
		return fmt.Errorf("container open needs the docker CLI for the interactive shell, and it is not on PATH: %w", err)
	}
	args := []string{"docker", "exec", "-it", "-u", fmt.Sprintf("%d:%d", id.UID, id.GID), "-w", "/workspace", strings.TrimPrefix(c.Name, "/"), "bash", "-l"}
	if !isTerminal() {
		args[2] = "-i"
	}
	return syscall.Exec(docker, args, os.Environ())
}

func isTerminal() bool {
	fi, err := os.Stdin.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// isTerminalWriter reports whether w is a terminal, for progress bars.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
