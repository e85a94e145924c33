package gpu

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
)

// Lister is the one Docker call the holdings need.
type Lister interface {
	ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error)
}

// ReadHoldings lists ds01's containers, stopped ones too, and rebuilds the
// holdings from their labels (see Holdings). It is what Reserve's held
// reads, bad being worth a warning.
func ReadHoldings(ctx context.Context, d Lister, releaseOnStop bool) (hs []Holding, bad []error, err error) {
	cs, err := ReadContainers(ctx, d)
	if err != nil {
		return nil, nil, err
	}
	hs, bad = Holdings(cs, releaseOnStop)
	return hs, bad, nil
}

// ReadContainers is ds01's containers as Holdings takes them.
func ReadContainers(ctx context.Context, d Lister) ([]Container, error) {
	f := client.Filters{}.Add("label", label.Managed+"=true")
	res, err := d.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing ds01's containers for their GPUs: %w", err)
	}
	var cs []Container
	for _, c := range res.Items {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		cs = append(cs, Container{ID: c.ID, Name: name, Labels: c.Labels, Created: time.Unix(c.Created, 0).UTC(), State: string(c.State)})
	}
	return cs, nil
}
