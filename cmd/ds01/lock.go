package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/identity"
)

// lockProject takes the lock of one of id's projects for the rest of the
// command (see pipeline.LockProject), saying so when it has to wait. It
// lives beside the user's records, taken as the user.
func lockProject(ctx context.Context, cmd *cli.Command, id identity.Identity, project string) (func(), error) {
	project, _, _ = strings.Cut(project, ":") // p:latest is p
	root, rel, err := recordsPlace(id)
	if err != nil {
		return nil, err
	}
	return pipeline.LockProject(ctx, id.Cred(), root, rel, project, func() {
		fmt.Fprintf(cmd.Root().ErrWriter, "waiting for another ds01 working on project %s…\n", project)
	})
}

// projectOf is the project of an image tag ds01-{UID}/PROJECT:latest.
func projectOf(tag string) string {
	_, p, _ := strings.Cut(tag, "/")
	p, _, _ = strings.Cut(p, ":")
	return p
}
