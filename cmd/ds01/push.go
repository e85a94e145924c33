package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/termsafe"
)

func imagePush() *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "send your image to a registry, only what it lacks (the base is mounted or found there)",
		ArgsUsage: "PROJECT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "`REGISTRY/REPO[:TAG]` to push to; default the administrator's DS01_PUSH_REPO ({uid} and {project} replaced)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say where each layer's bytes come from"},
		},
		Action: runImagePush,
	}
}

func imagePull() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "take your image from a registry as ds01-{UID}/PROJECT:latest, downloading only the layers this engine lacks",
		ArgsUsage: "REF",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "project", Usage: "the project `NAME` here; default the one its labels name"},
			&cli.BoolFlag{Name: "force", Usage: "replace your image of the project; an image set up for another user is assembled again for you"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say more"},
		},
		Action: runImagePull,
	}
}

func runImagePush(ctx context.Context, cmd *cli.Command) error {
	project, err := oneArg(cmd, "PROJECT")
	if err != nil {
		return err
	}
	if _, _, err := label.ImageName(0, project); err != nil {
		return usageError{err}
	}
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	out := cmd.Root().Writer
	ev := events(cmd)
	var progressDone func()
	ev.LoadProgress, progressDone = pushProgress(out)
	res, err := o.PushImage(ctx, id, ops.ImagePush{Project: project, To: cmd.String("to")}, ev)
	progressDone()
	if err != nil {
		return err
	}
	if cmd.Bool("verbose") {
		for _, l := range res.Layers {
			from := l.From
			if l.Mount != "" {
				from += ", mountable from " + l.Mount
			}
			fmt.Fprintf(out, "  layer %s (%s): %s\n", l.DiffID, humanSize(l.Size), termsafe.Text(from))
		}
	}
	fmt.Fprintf(out, "pushed %s@%s (image %s), %s sent\n", termsafe.Text(res.Ref), res.Digest, res.ImageID, humanSize(res.Sent))
	return nil
}

// pushProgress shows a push's progress on a terminal, nothing elsewhere.
func pushProgress(w io.Writer) (func(total, n int64), func()) {
	if !isTerminalWriter(w) {
		return nil, func() {}
	}
	var done, total int64
	return func(t, n int64) {
			done, total = done+n, t
			fmt.Fprintf(w, "\rpushing: %s / %s checked or sent   ", humanSize(done), humanSize(total))
		}, func() {
			if total > 0 {
				fmt.Fprintln(w)
			}
		}
}

func runImagePull(ctx context.Context, cmd *cli.Command) error {
	ref, err := oneArg(cmd, "REF")
	if err != nil {
		return err
	}
	if p := cmd.String("project"); p != "" {
		if _, _, err := label.ImageName(0, p); err != nil {
			return usageError{err}
		}
	}
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	res, err := o.PullImage(ctx, id, ops.ImagePull{Ref: ref, Project: cmd.String("project"), Force: cmd.Bool("force")}, events(cmd))
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	for _, w := range res.Warnings {
		fmt.Fprintln(cmd.Root().ErrWriter, "warning:", termsafe.Text(w))
	}
	if res.Reassembled != nil {
		fmt.Fprintf(out, "assembled %s for you on %s (image %s)\n", res.Tag, termsafe.Text(ref), res.ImageID)
		return nil
	}
	fmt.Fprintf(out, "pulled %s as %s (image %s): %d of %d layers already here, %s downloaded\n",
		termsafe.Text(ref), res.Tag, res.ImageID, res.Held, res.Layers, humanSize(res.Downloaded))
	return nil
}
