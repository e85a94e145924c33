package gpu_test

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/testbed"
)

// Containers labelled as deploy will label them, in the real daemon:
// their holdings come back from docker ps alone.
func TestReadHoldingsDocker(t *testing.T) {
	d := testbed.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := testbed.Prefix(t)
	tag := prefix + "/gpu:latest"
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(tag)
	var buf bytes.Buffer
	if err := tarball.Write(ref, img, &buf); err != nil {
		t.Fatal(err)
	}
	testbed.RemoveImage(t, d, tag)
	if _, err := d.ImageLoad(ctx, &buf, client.ImageLoadWithQuiet(true)); err != nil {
		t.Fatal(err)
	}
	inv, err := gpu.ParseQuery([]byte("0, GPU-00000000-0000-0000-0000-000000000000, T4, 15360, [N/A], 0\n1, GPU-11111111-1111-1111-1111-111111111111, T4, 15360, [N/A], 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	al, err := gpu.Allocate(gpu.Ask{Inventory: inv, Request: gpu.Request{Count: 1}, User: gpu.User{Login: "alice", UID: 4242}, Limits: gpu.Limits{Default: gpu.Limit{Max: 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	labels := label.Container{Login: "alice", Name: prefix, UID: 4242, GID: 4242, GPUs: "1", CreatedAt: time.Now(), Interface: "cli"}.Encode()
	maps.Copy(labels, al.Labels())
	cname := label.ContainerName(prefix, 4242)
	c, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{Name: cname, Config: &container.Config{Image: tag, Labels: labels, Cmd: []string{"/nothing"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true}) })

	hs, bad, err := gpu.ReadHoldings(ctx, d, false)
	if err != nil {
		t.Fatal(err)
	}
	var mine []gpu.Holding
	for _, h := range hs {
		if h.ContainerID == c.ID {
			mine = append(mine, h)
		}
	}
	if len(mine) != 1 || mine[0].UUID != inv.Devices[0].UUID || mine[0].Container != cname || mine[0].UID != 4242 || mine[0].State != "created" {
		t.Fatalf("holdings of %s: %+v (bad: %v)", cname, mine, bad)
	}
	// The next request sees it held.
	al2, err := gpu.Allocate(gpu.Ask{Inventory: inv, Request: gpu.Request{Count: 1}, User: gpu.User{Login: "bob", UID: 4243}, Limits: gpu.Limits{Default: gpu.Limit{Max: 1}}}, mine)
	if err != nil || al2.UUIDs()[0] != inv.Devices[1].UUID {
		t.Fatalf("second allocation: %v %v", al2, err)
	}
	// Held until it stops, a created container has not stopped: it holds
	// (else a deploy without --start would hand its GPUs on at once).
	hs, _, _ = gpu.ReadHoldings(ctx, d, true)
	if !slices.ContainsFunc(hs, func(h gpu.Holding) bool { return h.ContainerID == c.ID }) {
		t.Errorf("a created, never-started container holds nothing with release on stop: %+v", hs)
	}
}
