package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/registry"
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
	// Root pruning for everyone is root itself, which imageSetup refuses.
	id, err := caller(cmd)
	if err != nil {
		return err
	}
	if id.ActsForUser() && !id.Root {
		// Through sudo the cache is root's, every user's: it cannot say
		// whose a package image is, nor may a user learn what others use.
		return usagef("image prune through sudo would judge the package images of every user's builds: it is for root itself")
	}
	d, err := deploy.Connect(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	mine, err := packageScope(cmd, id)
	if err != nil {
		return err
	}
	imgs, err := d.Images.PackageImages(ctx)
	if err != nil {
		return err
	}
	out, dry := cmd.Root().Writer, cmd.Bool("dry-run")
	keys := cmd.Args().Slice()
	var n int
	var freed int64
	var failed []string
	for _, p := range imgs {
		if !mine(p.Key()) || len(keys) > 0 && !slices.Contains(keys, p.Key()) {
			continue
		}
		if len(p.UsedBy) > 0 {
			fmt.Fprintf(out, "  kept %s: used by %s\n", p.Tags[0], strings.Join(p.UsedBy, ", "))
			continue
		}
		if !dry {
			if err := d.Images.RemovePackageImage(ctx, p); err != nil {
				failed = append(failed, err.Error())
				continue
			}
		}
		fmt.Fprintf(out, "  %s %s (package layer %s)\n", map[bool]string{true: "would remove", false: "removed"}[dry], p.Tags[0], humanSize(p.LayerSize))
		n++
		freed += p.LayerSize
	}
	verb := map[bool]string{true: "would remove", false: "removed"}[dry]
	fmt.Fprintf(out, "%s %d package images no image uses, %s of package layers\n", verb, n, humanSize(freed))
	if len(failed) > 0 {
		return fmt.Errorf("some package images were kept:\n  %s", strings.Join(failed, "\n  "))
	}
	return nil
}

// packageScope says which package images a prune may touch: root's own
// call every one; anyone else's those whose layer their own cache holds
// (packages/req-KEY….json), the ones they built or reused.
func packageScope(cmd *cli.Command, id identity.Identity) (func(key string) bool, error) {
	if id.Root && id.UID == 0 { // root's own call, not sudo nor --user
		return func(string) bool { return true }, nil
	}
	dir, err := registry.CacheDir()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(dir, "packages"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var have []string
	for _, e := range ents {
		if k, ok := strings.CutPrefix(e.Name(), "req-"); ok && strings.HasSuffix(k, ".json") {
			have = append(have, strings.TrimSuffix(k, ".json"))
		}
	}
	return func(key string) bool {
		return key != "" && slices.ContainsFunc(have, func(k string) bool { return strings.HasPrefix(k, key) })
	}, nil
}
