package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/serve"
	"github.com/ds01/ds01/internal/serve/policy"
)

// DefaultPolicy is where the administrator's policy lives.
const DefaultPolicy = "/etc/ds01/policy.toml"

func serveCmd() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the ds01 service (as root): users without the docker group use ds01, and docker on their own containers, through its socket",
		Description: "Listens on --socket (or the socket systemd hands it), mode 0666: the kernel tells who connects.\n" +
			"Under /ds01/v1/ it runs ds01's commands for the caller within the policy; the rest of the socket is\n" +
			"a Docker-compatible subset for the caller's own containers (DOCKER_HOST=unix://SOCKET docker ps).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Value: DefaultSocket, Usage: "the socket to listen on"},
			&cli.StringFlag{Name: "policy", Usage: "the administrator's policy (TOML; default " + DefaultPolicy + " when it exists, else the built-in default)"},
			&cli.StringFlag{Name: "docker-socket", Value: dockerSocket, Usage: "the Docker engine's socket"},
			&cli.StringFlag{Name: "push-repo", Usage: "the repository image push sends users' images to, {uid} and {project} replaced (default: $DS01_PUSH_REPO)", Sources: cli.EnvVars("DS01_PUSH_REPO")},
		},
		Action: runServe,
	}
}

func runServe(ctx context.Context, cmd *cli.Command) error {
	pol, err := loadPolicy(cmd)
	if err != nil {
		return err
	}
	os.Setenv("DOCKER_HOST", "unix://"+cmd.String("docker-socket"))
	d, err := deploy.Connect(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	o, err := newOps(d)
	if err != nil {
		return err
	}
	o.ConfigDir = "" // records live in each user's home, written as the user
	o.PushRepo = cmd.String("push-repo")
	cfg := serve.Config{Socket: cmd.String("socket"), Policy: pol, DockerSocket: cmd.String("docker-socket"), GPULockDir: os.Getenv(lockDirEnv),
		Ready: func(p string) {
			fmt.Fprintf(cmd.Root().ErrWriter, "ds01 serve: listening on %s (docker %s, %s store)\n", p, d.APIVersion, d.Store)
		}}
	return serve.Run(ctx, cfg, o)
}

// loadPolicy is --policy, else the default file when it exists, else the
// built-in default.
func loadPolicy(cmd *cli.Command) (policy.Policy, error) {
	return readPolicy(cmd.String("policy"))
}

// readPolicy is the policy at path (root's file), or with "" the default
// file when it exists, else the built-in default.
func readPolicy(path string) (policy.Policy, error) {
	if path == "" {
		if _, err := os.Stat(DefaultPolicy); err != nil {
			return policy.Default(), nil
		}
		path = DefaultPolicy
	}
	p, err := policy.Load(path)
	if err != nil {
		return p, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}
