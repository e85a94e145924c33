package api

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
)

// operation runs one call: the request decoded, the policy asked, the
// result sent. It returns what the audit line names as the target.
type operation func(ctx context.Context, s *Server, id identity.Identity, raw json.RawMessage, ev ops.Events, st *stream) (target string, result []byte, err error)

// Requests of the operations that take more than their request value.
type (
	retireImage struct {
		Project string `json:"project"`
		Force   bool   `json:"force"`
	}
	listContainers struct {
		All bool `json:"all"`
	}
	openContainer struct {
		Name string `json:"name"`
	}
	retireLegacy struct {
		Tags []string `json:"tags"`
	}
	// retiredLegacy carries what was removed even when some were kept.
	retiredLegacy struct {
		Removed []string `json:"removed"`
		Kept    string   `json:"kept,omitempty"`
	}
)

// op adapts an operation of ops to the wire: decode Req, check, run,
// encode Res.
func op[Req, Res any](target func(Req) string, fn func(ctx context.Context, o *ops.Ops, id identity.Identity, r Req, ev ops.Events, st *stream) (Res, error)) operation {
	return func(ctx context.Context, s *Server, id identity.Identity, raw json.RawMessage, ev ops.Events, st *stream) (string, []byte, error) {
		var r Req
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &r); err != nil {
				return "", nil, fmt.Errorf("reading the request: %w", err)
			}
		}
		t := target(r)
		if s.Check != nil {
			if err := s.Check(id, t, r); err != nil {
				return t, nil, err
			}
		}
		res, err := fn(ctx, s.Ops, id, r, ev, st)
		if err != nil {
			return t, nil, err
		}
		b, err := json.Marshal(res)
		return t, b, err
	}
}

func none[Req any](Req) string { return "" }

// operations are every ds01 operation the service offers. Pruning is not
// among them: it is root's, done directly.
var operations = map[string]operation{
	"image/create": op(func(r ops.ImageCreate) string { return r.Project }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r ops.ImageCreate, ev ops.Events, _ *stream) (any, error) {
		return o.CreateImage(ctx, id, r, ev)
	}),
	"image/update": op(func(r ops.ImageUpdate) string { return r.Project }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r ops.ImageUpdate, ev ops.Events, _ *stream) (any, error) {
		return o.UpdateImage(ctx, id, r, ev)
	}),
	"image/list": op(none[struct{}], func(ctx context.Context, o *ops.Ops, id identity.Identity, _ struct{}, _ ops.Events, _ *stream) (any, error) {
		return o.ListImages(ctx, id)
	}),
	"image/legacy": op(none[struct{}], func(ctx context.Context, o *ops.Ops, id identity.Identity, _ struct{}, _ ops.Events, _ *stream) (any, error) {
		return o.LegacyImages(ctx, id)
	}),
	"image/retire": op(func(r retireImage) string { return r.Project }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r retireImage, ev ops.Events, _ *stream) (any, error) {
		return o.RetireImage(ctx, id, r.Project, r.Force, ev)
	}),
	"image/retire-legacy": op(none[retireLegacy], func(ctx context.Context, o *ops.Ops, id identity.Identity, r retireLegacy, _ ops.Events, _ *stream) (any, error) {
		removed, err := o.RetireLegacy(ctx, id, r.Tags)
		res := retiredLegacy{Removed: removed}
		if err != nil {
			res.Kept = err.Error()
		}
		return res, nil
	}),
	"container/deploy": op(func(r ops.ContainerDeploy) string { return r.Name }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r ops.ContainerDeploy, ev ops.Events, _ *stream) (any, error) {
		return o.DeployContainer(ctx, id, r, ev)
	}),
	"container/list": op(none[listContainers], func(ctx context.Context, o *ops.Ops, id identity.Identity, r listContainers, _ ops.Events, _ *stream) (any, error) {
		return o.ListContainers(ctx, id, r.All)
	}),
	"container/retire": op(func(r ops.ContainerRetire) string { return r.Name }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r ops.ContainerRetire, ev ops.Events, _ *stream) (any, error) {
		return o.RetireContainer(ctx, id, r, ev)
	}),
	"container/open": op(func(r openContainer) string { return r.Name }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r openContainer, _ ops.Events, _ *stream) (any, error) {
		return o.OpenContainer(ctx, id, r.Name)
	}),
	"base/pull": op(func(r ops.BasePull) string { return r.Ref }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r ops.BasePull, _ ops.Events, st *stream) (any, error) {
		r.Events = st.pullEvents
		return o.PullBase(ctx, id, r)
	}),
	"image/push": op(func(r ops.ImagePush) string { return r.Project }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r ops.ImagePush, ev ops.Events, _ *stream) (any, error) {
		return o.PushImage(ctx, id, r, ev)
	}),
	"image/pull": op(func(r ops.ImagePull) string { return r.Ref }, func(ctx context.Context, o *ops.Ops, id identity.Identity, r ops.ImagePull, ev ops.Events, _ *stream) (any, error) {
		return o.PullImage(ctx, id, r, ev)
	}),
	"base/list": op(none[struct{}], func(_ context.Context, o *ops.Ops, _ identity.Identity, _ struct{}, _ ops.Events, _ *stream) (any, error) {
		return o.ListBases()
	}),
}
