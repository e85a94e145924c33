package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/deploy"
)

func imagePrune() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "remove the shared package images (ds01-packages/KEY) that no image is built on and no container uses",
		Description: "Root sees every package image; anyone else (or root acting for a user) only those whose\n" +
			"package layer is in their own ds01 cache, so nothing another user made is removed.\n" +
			"KEYs, if given, limit it to those package images.",
		ArgsUsage: "[KEY...]",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "dry-run", Usage: "say what would be removed"}},
		Action:    runImagePrune,
	}
}

func runImagePrune(ctx context.Context, cmd *cli.Command) error {
	id, err := caller(cmd)
	if err != nil {
		return err
	}
	d, err := deploy.Connect(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	o, err := newOps(d)
	if err != nil {
		return err
	}
	dry := cmd.Bool("dry-run")
	res, err := o.PrunePackages(ctx, id, cmd.Args().Slice(), dry)
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	verb := map[bool]string{true: "would remove", false: "removed"}[dry]
	var n int
	var freed int64
	var failed []string
	for _, r := range res {
		p := r.Image
		switch {
		case r.Kept:
			fmt.Fprintf(out, "  kept %s: used by %s\n", p.Tags[0], strings.Join(p.UsedBy, ", "))
		case r.Err != nil:
			failed = append(failed, r.Err.Error())
		default:
			fmt.Fprintf(out, "  %s %s (package layer %s)\n", verb, p.Tags[0], humanSize(p.LayerSize))
			n++
			freed += p.LayerSize
		}
	}
	fmt.Fprintf(out, "%s %d package images no image uses, %s of package layers\n", verb, n, humanSize(freed))
	if len(failed) > 0 {
		return fmt.Errorf("some package images were kept:\n  %s", strings.Join(failed, "\n  "))
	}
	return nil
}
