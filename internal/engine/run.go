package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// RunResult is what a finished one-off container printed and returned.
type RunResult struct {
	Stdout, Stderr string
	ExitCode       int64
}

// Run runs cmd in a new container of image as user ("" for the image's
// own), waits for it, and removes it whatever happens, Ctrl-C included.
func (d *Docker) Run(ctx context.Context, image, user string, cmd ...string) (RunResult, error) {
	created, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, User: user, Cmd: cmd, Hostname: "ds01"},
		// One-off commands need no network, and an engine may have no
		// bridge. Without one Docker does not put the hostname in
		// /etc/hosts, and sudo complains it cannot resolve it.
		HostConfig: &container.HostConfig{NetworkMode: "none", ExtraHosts: []string{"ds01:127.0.0.1"}},
	})
	if err != nil {
		return RunResult{}, fmt.Errorf("creating a container of %s: %w", image, err)
	}
	defer d.RemoveContainer(created.ID)
	if _, err := d.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return RunResult{}, fmt.Errorf("starting a container of %s: %w", image, err)
	}
	wait := d.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var res RunResult
	select {
	case w := <-wait.Result:
		res.ExitCode = w.StatusCode
	case err := <-wait.Error:
		return RunResult{}, fmt.Errorf("waiting for the container of %s: %w", image, err)
	}
	logs, err := d.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return res, fmt.Errorf("reading output: %w", err)
	}
	defer logs.Close()
	var out, errOut bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errOut, logs); err != nil {
		return res, fmt.Errorf("reading output: %w", err)
	}
	res.Stdout, res.Stderr = out.String(), errOut.String()
	return res, nil
}

// remove force-removes a container with a context of its own, so that a
// cancelled caller still cleans up.
func (d *Docker) RemoveContainer(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
}

// Exec runs cmd in a running container as user and waits for it.
func (d *Docker) Exec(ctx context.Context, id, user string, cmd ...string) (RunResult, error) {
	var out, errOut bytes.Buffer
	code, err := d.ExecTo(ctx, id, user, nil, &out, &errOut, cmd...)
	return RunResult{Stdout: out.String(), Stderr: errOut.String(), ExitCode: code}, err
}

// ExecTo runs cmd in a running container as user with env, streaming its
// output to stdout and stderr as it comes, and returns its exit code.
func (d *Docker) ExecTo(ctx context.Context, id, user string, env []string, stdout, stderr io.Writer, cmd ...string) (int64, error) {
	ex, err := d.ExecCreate(ctx, id, client.ExecCreateOptions{User: user, Cmd: cmd, Env: env, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	att, err := d.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer att.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, att.Reader)
		copied <- err
	}()
	select {
	case err = <-copied:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("reading exec output: %w", err)
	}
	ins, err := d.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	return int64(ins.ExitCode), nil
}
