package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/api"
)

// DefaultSocket is where ds01 serve listens unless told otherwise.
const DefaultSocket = "/run/ds01/ds01.sock"

// dockerSocket is the local engine's socket, which a user outside the
// docker group cannot open.
const dockerSocket = "/var/run/docker.sock"

// link is how this process reaches Docker: directly, or through the ds01
// service at socket.
type link struct {
	socket string // "" when direct
	why    string
}

// chooseLink: --direct forces direct use; DS01_HOST=unix://PATH the
// service; else the service when its default socket is there and the
// caller cannot open the Docker socket (and DOCKER_HOST names no other).
func chooseLink(cmd *cli.Command) (link, error) {
	if cmd.Bool("direct") {
		return link{why: "--direct"}, nil
	}
	if h := os.Getenv("DS01_HOST"); h != "" {
		p, ok := strings.CutPrefix(h, "unix://")
		if !ok || p == "" {
			return link{}, usagef("DS01_HOST=%q: give unix:///path/to/ds01.sock", h)
		}
		return link{socket: p, why: "DS01_HOST"}, nil
	}
	if os.Getenv("DOCKER_HOST") != "" {
		return link{why: "DOCKER_HOST is set"}, nil
	}
	if fi, err := os.Stat(DefaultSocket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return link{why: "no ds01 service at " + DefaultSocket}, nil
	}
	if f, err := os.OpenFile(dockerSocket, os.O_RDWR, 0); err == nil {
		f.Close()
		return link{why: "you may use " + dockerSocket}, nil
	}
	return link{socket: DefaultSocket, why: "you may not use " + dockerSocket}, nil
}

func (l link) String() string {
	if l.socket == "" {
		return "direct use of the Docker daemon (" + l.why + ")"
	}
	return "the ds01 service at " + l.socket + " (" + l.why + ")"
}

// setup is what every command on the engine starts from: whom it acts
// for, and the operations, here or through the service.
func setup(ctx context.Context, cmd *cli.Command) (identity.Identity, ops.Operations, func(), error) {
	id, err := caller(cmd)
	if err != nil {
		return id, nil, nil, err
	}
	if err := id.CheckUser(); err != nil {
		return id, nil, nil, usageError{err}
	}
	l, err := chooseLink(cmd)
	if err != nil {
		return id, nil, nil, err
	}
	if l.socket != "" {
		return id, api.NewClient(l.socket, overrides(cmd), cmd.Bool("verbose")), func() {}, nil
	}
	d, err := deploy.Connect(ctx)
	if err != nil {
		return id, nil, nil, err
	}
	o, err := newOps(d)
	if err == nil {
		o.GPU, err = directGPU(cmd, id, o.CacheDir)
	}
	if err != nil {
		d.Close()
		return id, nil, nil, err
	}
	return id, o, func() { d.Close() }, nil
}

// dockerEnv is the environment the docker CLI runs in for container
// open: through the service, its Docker-compatible socket.
func dockerEnv(cmd *cli.Command) []string {
	l, err := chooseLink(cmd)
	if err != nil || l.socket == "" {
		return os.Environ()
	}
	env := []string{"DOCKER_HOST=unix://" + l.socket}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_HOST=") {
			env = append(env, kv)
		}
	}
	return env
}

// linkLine is what ds01 version says of the link.
func linkLine(cmd *cli.Command) string {
	l, err := chooseLink(cmd)
	if err != nil {
		return fmt.Sprintf("reaches Docker: %v", err)
	}
	return "reaches Docker through " + l.String()
}
