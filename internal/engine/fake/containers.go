package fake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// ctr is a container: its settings, its state, and its filesystem, the
// image's layers with what was copied into it on top. No process runs in
// it: started, it runs until stopped.
type ctr struct {
	id, name          string
	imageRef, imageID string
	stack             []v1.Hash // its image's diff IDs
	upper             [][]byte  // tars copied into it, oldest first
	changes           []container.FilesystemChange
	config            *container.Config
	host              *container.HostConfig
	created           time.Time
	state             container.ContainerState
	exitCode          int
	exited, removed   chan struct{}
}

func (c *ctr) running() bool { return c.state == container.StateRunning }

var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// findContainer finds a container by name, /name, ID or ID prefix.
func (e *Engine) findContainer(ref string) (*ctr, error) {
	name := strings.TrimPrefix(ref, "/")
	for _, c := range e.containers {
		if c.name == name || c.id == ref {
			return c, nil
		}
	}
	var found *ctr
	for id, c := range e.containers {
		if ref != "" && strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, notFound("No such container: %s (the ID prefix is ambiguous)", ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, notFound("No such container: %s", ref)
	}
	return found, nil
}

// ContainerCreate makes a container of the image its config names, with
// the image's labels under its own and the image's command, environment,
// user and working directory where it sets none.
func (e *Engine) ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	e.called("ContainerCreate")
	defer e.mu.Unlock()
	if options.Config == nil {
		return client.ContainerCreateResult{}, invalid("config cannot be empty in order to create a container")
	}
	ref := options.Config.Image
	if ref == "" {
		ref = options.Image
	}
	im, err := e.lookup(ref)
	if err != nil {
		return client.ContainerCreateResult{}, err
	}
	name := strings.TrimPrefix(options.Name, "/")
	if name == "" {
		e.seq++
		name = fmt.Sprintf("fake_%d", e.seq)
	} else if !validName.MatchString(name) {
		return client.ContainerCreateResult{}, invalid("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	for _, o := range e.containers {
		if o.name == name {
			return client.ContainerCreateResult{}, conflict(`Conflict. The container name "/%s" is already in use by container "%s". You have to remove (or rename) that container to be able to reuse that name.`, name, o.id)
		}
	}
	cfg := merged(*options.Config, im.config.Config)
	cfg.Image = ref
	host := &container.HostConfig{}
	if options.HostConfig != nil {
		h := *options.HostConfig
		host = &h
	}
	b := make([]byte, 32)
	rand.Read(b)
	c := &ctr{id: hex.EncodeToString(b), name: name, imageRef: ref, imageID: im.id, stack: slices.Clone(im.config.RootFS.DiffIDs),
		config: &cfg, host: host, created: time.Now().UTC(), state: container.StateCreated,
		exited: make(chan struct{}), removed: make(chan struct{})}
	e.containers[c.id] = c
	return client.ContainerCreateResult{ID: c.id}, nil
}

// merged is the container's config over the image's, as the daemon
// merges them at create.
func merged(cfg container.Config, img v1.Config) container.Config {
	labels := maps.Clone(img.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, cfg.Labels)
	cfg.Labels = labels
	if len(cfg.Cmd) == 0 && len(cfg.Entrypoint) == 0 {
		cfg.Cmd, cfg.Entrypoint = img.Cmd, img.Entrypoint
	}
	if len(cfg.Env) == 0 {
		cfg.Env = slices.Clone(img.Env)
	}
	if cfg.User == "" {
		cfg.User = img.User
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = img.WorkingDir
	}
	return cfg
}

func mountsOf(h *container.HostConfig) []container.MountPoint {
	var out []container.MountPoint
	for _, b := range h.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			continue
		}
		ro := len(parts) > 2 && slices.Contains(strings.Split(parts[2], ","), "ro")
		out = append(out, container.MountPoint{Type: mount.TypeBind, Source: parts[0], Destination: parts[1], RW: !ro})
	}
	for _, m := range h.Mounts {
		out = append(out, container.MountPoint{Type: m.Type, Source: m.Source, Destination: m.Target, RW: !m.ReadOnly})
	}
	return out
}

// ContainerInspect is the container by name or ID.
func (e *Engine) ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	e.called("ContainerInspect")
	defer e.mu.Unlock()
	c, err := e.findContainer(id)
	if err != nil {
		return client.ContainerInspectResult{}, err
	}
	cfg := *c.config
	host := *c.host
	r := container.InspectResponse{
		ID: c.id, Name: "/" + c.name, Created: c.created.Format(time.RFC3339Nano), Image: c.imageID, Driver: "fake",
		State:  &container.State{Status: c.state, Running: c.running(), ExitCode: c.exitCode},
		Config: &cfg, HostConfig: &host, Mounts: mountsOf(c.host),
	}
	if len(cfg.Entrypoint) > 0 {
		r.Path, r.Args = cfg.Entrypoint[0], append(cfg.Entrypoint[1:], cfg.Cmd...)
	} else if len(cfg.Cmd) > 0 {
		r.Path, r.Args = cfg.Cmd[0], cfg.Cmd[1:]
	}
	return client.ContainerInspectResult{Container: r}, nil
}

// ContainerList lists running containers, or all, kept by the filters
// label=, name= (a regular expression on /name), ancestor= (an image ref
// or ID), id= and status=.
func (e *Engine) ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error) {
	e.called("ContainerList")
	defer e.mu.Unlock()
	if err := checkFilters(options.Filters, "label", "name", "ancestor", "id", "status"); err != nil {
		return client.ContainerListResult{}, err
	}
	ids := slices.Sorted(maps.Keys(e.containers))
	items := []container.Summary{}
	for _, id := range ids {
		c := e.containers[id]
		if !options.All && !c.running() || !e.keep(c, options.Filters) {
			continue
		}
		s := container.Summary{ID: c.id, Names: []string{"/" + c.name}, Image: c.imageRef, ImageID: c.imageID,
			Command: strings.Join(append(slices.Clone(c.config.Entrypoint), c.config.Cmd...), " "), Created: c.created.Unix(),
			Labels: c.config.Labels, State: c.state, Status: c.status(), Mounts: mountsOf(c.host)}
		s.HostConfig.NetworkMode = string(c.host.NetworkMode)
		items = append(items, s)
	}
	return client.ContainerListResult{Items: items}, nil
}

func (c *ctr) status() string {
	switch c.state {
	case container.StateRunning:
		return "Up"
	case container.StateExited:
		return fmt.Sprintf("Exited (%d)", c.exitCode)
	}
	return "Created"
}

func anyMatch(values map[string]bool, f func(string) bool) bool {
	if values == nil {
		return true
	}
	for v := range values {
		if f(v) {
			return true
		}
	}
	return false
}

func (e *Engine) keep(c *ctr, f client.Filters) bool {
	return matchLabels(f["label"], c.config.Labels) &&
		anyMatch(f["name"], func(v string) bool { ok, _ := regexp.MatchString(v, "/"+c.name); return ok }) &&
		anyMatch(f["id"], func(v string) bool { return strings.HasPrefix(c.id, v) }) &&
		anyMatch(f["status"], func(v string) bool { return v == string(c.state) }) &&
		anyMatch(f["ancestor"], func(v string) bool {
			im, err := e.lookup(v)
			return err == nil && im.id == c.imageID
		})
}

// ContainerStart marks the container running; no process runs.
func (e *Engine) ContainerStart(ctx context.Context, id string, options client.ContainerStartOptions) (client.ContainerStartResult, error) {
	e.called("ContainerStart")
	defer e.mu.Unlock()
	c, err := e.findContainer(id)
	if err != nil {
		return client.ContainerStartResult{}, err
	}
	if !c.running() {
		c.state, c.exitCode, c.exited = container.StateRunning, 0, make(chan struct{})
	}
	return client.ContainerStartResult{}, nil
}

// ContainerStop stops a running container as a kill after the grace
// period would (exit code 137).
func (e *Engine) ContainerStop(ctx context.Context, id string, options client.ContainerStopOptions) (client.ContainerStopResult, error) {
	e.called("ContainerStop")
	defer e.mu.Unlock()
	c, err := e.findContainer(id)
	if err != nil {
		return client.ContainerStopResult{}, err
	}
	c.stop()
	return client.ContainerStopResult{}, nil
}

func (c *ctr) stop() {
	if c.running() {
		c.state, c.exitCode = container.StateExited, 137
		close(c.exited)
	}
}

// ContainerWait waits for the condition (not-running by default,
// next-exit, removed) or ctx.
func (e *Engine) ContainerWait(ctx context.Context, id string, options client.ContainerWaitOptions) client.ContainerWaitResult {
	e.called("ContainerWait")
	defer e.mu.Unlock()
	results, errs := make(chan container.WaitResponse, 1), make(chan error, 1)
	res := client.ContainerWaitResult{Result: results, Error: errs}
	c, err := e.findContainer(id)
	if err != nil {
		errs <- err
		return res
	}
	done := c.exited
	switch options.Condition {
	case container.WaitConditionRemoved:
		done = c.removed
	case container.WaitConditionNextExit:
	default:
		if !c.running() {
			results <- container.WaitResponse{StatusCode: int64(c.exitCode)}
			return res
		}
	}
	go func() {
		select {
		case <-done:
			e.mu.Lock()
			code := c.exitCode
			e.mu.Unlock()
			results <- container.WaitResponse{StatusCode: int64(code)}
		case <-ctx.Done():
			errs <- ctx.Err()
		}
	}()
	return res
}

// ContainerRemove removes a container; a running one only with Force.
func (e *Engine) ContainerRemove(ctx context.Context, id string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	e.called("ContainerRemove")
	defer e.mu.Unlock()
	c, err := e.findContainer(id)
	if err != nil {
		return client.ContainerRemoveResult{}, err
	}
	if c.running() && !options.Force {
		return client.ContainerRemoveResult{}, conflict("cannot remove container \"/%s\": container is running: stop the container before removing or force remove", c.name)
	}
	c.stop()
	delete(e.containers, c.id)
	close(c.removed)
	e.gc()
	return client.ContainerRemoveResult{}, nil
}

// ContainerLogs is empty: no process ran.
func (e *Engine) ContainerLogs(ctx context.Context, id string, options client.ContainerLogsOptions) (client.ContainerLogsResult, error) {
	e.called("ContainerLogs")
	defer e.mu.Unlock()
	if _, err := e.findContainer(id); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// ContainerDiff is what was copied into the container, each path added.
func (e *Engine) ContainerDiff(ctx context.Context, id string, options client.ContainerDiffOptions) (client.ContainerDiffResult, error) {
	e.called("ContainerDiff")
	defer e.mu.Unlock()
	c, err := e.findContainer(id)
	if err != nil {
		return client.ContainerDiffResult{}, err
	}
	return client.ContainerDiffResult{Changes: slices.Clone(c.changes)}, nil
}
