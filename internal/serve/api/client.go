package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/registry"
)

// Client is the operations through the service at Socket. The identity
// an operation is given is not sent: the service takes the caller from
// the kernel. As carries root's --user/--uid/--gid, which the service
// refuses from anyone else.
type Client struct {
	Socket  string
	As      identity.Overrides
	Verbose bool
	http    *http.Client
}

var _ ops.Operations = (*Client)(nil)

// NewClient talks to the service at socket.
func NewClient(socket string, as identity.Overrides, verbose bool) *Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	return &Client{Socket: socket, As: as, Verbose: verbose, http: &http.Client{Transport: &http.Transport{DialContext: dial}}}
}

// maxLine caps one line of the service's answer (a result, a log line).
const maxLine = 16 << 20

// call posts req to the operation and hands events to ev until the result
// (decoded into res) or the error.
func (c *Client) call(ctx context.Context, op string, req any, ev ops.Events, pull func(registry.PullEvent), res any) error {
	raw, err := json.Marshal(req)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(call{As: c.As, Verbose: c.Verbose, Request: raw})
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://ds01"+Prefix+op, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return fmt.Errorf("reaching the ds01 service at %s: %w (is ds01.socket active? use --direct with the docker group)", c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &Error{Message: string(bytes.TrimSpace(msg)), Code: 1}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("reading the service's answer: %w", err)
		}
		if done, err := deliver(m, ev, pull, res); done || err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the service's answer: %w", err)
	}
	return fmt.Errorf("the ds01 service ended its answer to %s without a result", op)
}

// deliver hands one message on; done is set by the result or the error.
func deliver(m message, ev ops.Events, pull func(registry.PullEvent), res any) (done bool, err error) {
	switch {
	case m.Error != nil:
		return true, m.Error
	case m.Result != nil:
		return true, json.Unmarshal(m.Result, res)
	case m.Log != "" && ev.Log != nil:
		io.WriteString(ev.Log, m.Log)
	case m.Out != "" && ev.PackageOutput != nil:
		io.WriteString(ev.PackageOutput, m.Out)
	case m.Warn != "" && ev.Warn != nil:
		ev.Warn(m.Warn)
	case m.Waiting != "" && ev.Waiting != nil:
		ev.Waiting(m.Waiting)
	case m.Progress != nil && ev.LoadProgress != nil:
		ev.LoadProgress(m.Progress[0], m.Progress[1])
	case m.Pull != nil && pull != nil:
		pull(*m.Pull)
	}
	return false, nil
}

func (c *Client) CreateImage(ctx context.Context, _ identity.Identity, r ops.ImageCreate, ev ops.Events) (*pipeline.CreateResult, error) {
	var res pipeline.CreateResult
	return &res, c.call(ctx, "image/create", r, ev, nil, &res)
}

func (c *Client) UpdateImage(ctx context.Context, _ identity.Identity, r ops.ImageUpdate, ev ops.Events) (*pipeline.CreateResult, error) {
	var res pipeline.CreateResult
	return &res, c.call(ctx, "image/update", r, ev, nil, &res)
}

func (c *Client) ListImages(ctx context.Context, _ identity.Identity) ([]pipeline.ImageInfo, error) {
	var res []pipeline.ImageInfo
	return res, c.call(ctx, "image/list", struct{}{}, ops.Events{}, nil, &res)
}

func (c *Client) LegacyImages(ctx context.Context, _ identity.Identity) ([]pipeline.LegacyImage, error) {
	var res []pipeline.LegacyImage
	return res, c.call(ctx, "image/legacy", struct{}{}, ops.Events{}, nil, &res)
}

func (c *Client) RetireImage(ctx context.Context, _ identity.Identity, project string, force bool, ev ops.Events) (string, error) {
	var res string
	return res, c.call(ctx, "image/retire", retireImage{Project: project, Force: force}, ev, nil, &res)
}

func (c *Client) RetireLegacy(ctx context.Context, _ identity.Identity, tags []string) ([]string, error) {
	var res retiredLegacy
	if err := c.call(ctx, "image/retire-legacy", retireLegacy{Tags: tags}, ops.Events{}, nil, &res); err != nil {
		return nil, err
	}
	if res.Kept != "" {
		return res.Removed, &Error{Message: res.Kept, Code: 1}
	}
	return res.Removed, nil
}

func (c *Client) DeployContainer(ctx context.Context, _ identity.Identity, r ops.ContainerDeploy, ev ops.Events) (*deploy.DeployResult, error) {
	var res deploy.DeployResult
	return &res, c.call(ctx, "container/deploy", r, ev, nil, &res)
}

func (c *Client) ListContainers(ctx context.Context, _ identity.Identity, all bool) ([]deploy.ContainerInfo, error) {
	var res []deploy.ContainerInfo
	return res, c.call(ctx, "container/list", listContainers{All: all}, ops.Events{}, nil, &res)
}

func (c *Client) RetireContainer(ctx context.Context, _ identity.Identity, r ops.ContainerRetire, ev ops.Events) (*ops.Retired, error) {
	var res ops.Retired
	return &res, c.call(ctx, "container/retire", r, ev, nil, &res)
}

func (c *Client) OpenContainer(ctx context.Context, _ identity.Identity, name string) (container.InspectResponse, error) {
	var res container.InspectResponse
	return res, c.call(ctx, "container/open", openContainer{Name: name}, ops.Events{}, nil, &res)
}

func (c *Client) PullBase(ctx context.Context, _ identity.Identity, r ops.BasePull) (registry.PullResult, error) {
	var res registry.PullResult
	return res, c.call(ctx, "base/pull", r, ops.Events{}, r.Events, &res)
}

func (c *Client) ListBases() ([]registry.Entry, error) {
	var res []registry.Entry
	return res, c.call(context.Background(), "base/list", struct{}{}, ops.Events{}, nil, &res)
}

func (c *Client) PushImage(ctx context.Context, _ identity.Identity, r ops.ImagePush, ev ops.Events) (*ops.PushResult, error) {
	var res ops.PushResult
	return &res, c.call(ctx, "image/push", r, ev, nil, &res)
}

func (c *Client) PullImage(ctx context.Context, _ identity.Identity, r ops.ImagePull, ev ops.Events) (*ops.PullResult, error) {
	var res ops.PullResult
	return &res, c.call(ctx, "image/pull", r, ev, nil, &res)
}
