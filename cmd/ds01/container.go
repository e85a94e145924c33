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

	units "github.com/docker/go-units"
	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/termsafe"
)

func runContainerDeploy(ctx context.Context, cmd *cli.Command) error {
	if done, err := dispatchKube(ctx, cmd, runKubeDeploy); done {
		return err
	}
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
	req := ops.ContainerDeploy{
		Name: name, Image: cmd.String("image"),
		GPUs: cmd.String("gpus"), ShmSize: cmd.String("shm-size"), CgroupParent: cmd.String("cgroup-parent"),
		Workspace: cmd.String("workspace"), Data: cmd.String("data"), Models: cmd.String("models"),
		Start: cmd.Bool("start"), Force: cmd.Bool("force"), DryRun: cmd.Bool("dry-run"),
		AcceptSetuidRisk: cmd.Bool("accept-setuid-risk"),
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
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	res, err := o.DeployContainer(ctx, id, req, events(cmd))
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
	fmt.Fprintf(out, "%s %s from %s; workspace %s\n", res.Container, state, res.Image, res.Workspace)
	if res.GPUs != nil {
		fmt.Fprintf(out, "GPUs %s granted, held until the container is retired\n", grantedText(*res.GPUs))
	}
	fmt.Fprintf(out, "open it with: ds01 container open %s\n", name)
	return nil
}

// grantedText is "0 (GPU-…) + 3:1 (MIG-…)".
func grantedText(al gpu.Allocation) string {
	var parts []string
	for _, r := range al.Refs() {
		parts = append(parts, termsafe.Line(r.Index+" ("+r.UUID+")"))
	}
	return strings.Join(parts, " + ")
}

func runContainerList(ctx context.Context, cmd *cli.Command) error {
	if done, err := dispatchKube(ctx, cmd, runKubeList); done {
		return err
	}
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	cs, err := o.ListContainers(ctx, id, cmd.Bool("all"))
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
	if done, err := dispatchKube(ctx, cmd, runKubeRetire); done {
		return err
	}
	name, err := oneArg(cmd, "NAME")
	if err != nil {
		return err
	}
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	res, err := o.RetireContainer(ctx, id, ops.ContainerRetire{Name: name, Save: cmd.Bool("save")}, events(cmd))
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	if s := res.Saved; s != nil {
		fmt.Fprintf(out, "saved %d paths (%s of file contents) of %s into %s  %s\n", len(s.Paths), humanSize(s.Bytes), res.Container, s.Tag, s.ImageID)
		if cmd.Bool("verbose") {
			for _, p := range s.Paths {
				fmt.Fprintf(out, "  /%s\n", p)
			}
		}
	} else if res.NothingToSave {
		fmt.Fprintf(out, "%s has no changes worth saving outside /workspace, /tmp and caches\n", res.Container)
	}
	fmt.Fprintf(out, "retired %s\n", res.Container)
	return nil
}

func runContainerOpen(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() < 1 {
		return usagef("%s takes a NAME, then optionally the command to run", cmd.FullName())
	}
	name := cmd.Args().First()
	kubeOpen := func(ctx context.Context, cmd *cli.Command) error {
		return runKubeOpen(ctx, cmd, name, cmd.Args().Tail())
	}
	if done, err := dispatchKube(ctx, cmd, kubeOpen); done {
		return err
	}
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	c, err := o.OpenContainer(ctx, id, name)
	if err != nil {
		return err
	}
	// The interactive part is the docker CLI's: it handles the TTY, raw
	// mode and resizes better than anything ds01 would rewrite.
	docker, err := exec.LookPath("docker")
	if err != nil {
		return fmt.Errorf("container open needs the docker CLI for the interactive shell, and it is not on PATH: %w", err)
	}
	return syscall.Exec(docker, ops.Shell(id, c, isTerminal(), cmd.Args().Tail()...), dockerEnv(cmd))
}

// isTerminal says whether stdin is a terminal (a character device is not
// enough: /dev/null is one).
func isTerminal() bool {
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err == nil
}

// isTerminalWriter reports whether w is a terminal, for progress bars.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
