package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/identity/asuser"
)

// lockProject takes the lock of one of id's projects for the rest of the
// command (see deploy.LockProject), saying so when it has to wait. It
// lives beside the user's records, taken as the user; with DS01_CONFIG,
// a directory the caller named, as the caller.
func lockProject(ctx context.Context, cmd *cli.Command, id identity.Identity, project string) (func(), error) {
	project, _, _ = strings.Cut(project, ":") // p:latest is p
	dir, rel := os.Getenv("DS01_CONFIG"), "images"
	cred := asuser.Cred{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	} else {
		home, err := homeOf(id)
		if err != nil {
			return nil, fmt.Errorf("%w; set DS01_CONFIG to a directory for image records", err)
		}
		dir, rel, cred = home, ".ds01-config/images", asuser.Cred{UID: id.UID, GID: id.GID}
	}
	return deploy.LockProject(ctx, cred, dir, rel, project, func() {
		fmt.Fprintf(cmd.Root().ErrWriter, "waiting for another ds01 working on project %s…\n", project)
	})
}

// projectOf is the project of an image tag ds01-{UID}/PROJECT:latest.
func projectOf(tag string) string {
	_, p, _ := strings.Cut(tag, "/")
	p, _, _ = strings.Cut(p, ":")
	return p
}
