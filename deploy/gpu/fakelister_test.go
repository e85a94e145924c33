package gpu

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

type fakeLister struct {
	items []container.Summary
	err   error
	got   client.ContainerListOptions
}

func (f *fakeLister) ContainerList(_ context.Context, o client.ContainerListOptions) (client.ContainerListResult, error) {
	f.got = o
	return client.ContainerListResult{Items: f.items}, f.err
}

func TestReadHoldingsFake(t *testing.T) {
	c := ds01Container("abc", "train._.1001", "alice", "1001", "running", []Ref{{"0", "GPU-a"}})
	f := &fakeLister{items: []container.Summary{{ID: c.ID, Names: []string{"/" + c.Name}, Labels: c.Labels, State: "running", Created: 1740820000}, {ID: "x", Labels: map[string]string{}}}}
	hs, bad, err := ReadHoldings(context.Background(), f, true)
	if err != nil || len(bad) != 0 || len(hs) != 1 || hs[0].Container != "train._.1001" || hs[0].UUID != "GPU-a" || !f.got.All {
		t.Fatalf("%+v %v %v (asked %+v)", hs, bad, err, f.got)
	}
	if _, _, err := ReadHoldings(context.Background(), &fakeLister{err: errors.New("down")}, false); err == nil {
		t.Error("a failed list read as no holdings")
	}
	cs, _ := ReadContainers(context.Background(), f)
	if !cs[0].Created.Equal(time.Unix(1740820000, 0)) || cs[1].Name != "" {
		t.Errorf("%+v", cs)
	}
}
