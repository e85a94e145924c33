package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push writes an image to a registry, the way a second server gets it.
// go-containerregistry asks the registry for each blob first and uploads
// only those it lacks (and mounts across repositories where a layer came
// from the same registry: remote.MountableLayer).
func Push(ctx context.Context, img v1.Image, ref string, o PullOptions) error {
	_, err := PushWithProgress(ctx, img, ref, o, nil)
	return err
}

// PushWithProgress is Push telling progress on updates (which it
// closes), and returning the bytes uploaded: blobs the registry lacked
// and the manifest. go-containerregistry's own progress counts blobs
// found or mounted as done, so it cannot say what was sent.
func PushWithProgress(ctx context.Context, img v1.Image, ref string, o PullOptions, updates chan v1.Update) (int64, error) {
	r, err := ParseRef(ref)
	if err != nil {
		if updates != nil {
			close(updates)
		}
		return 0, err
	}
	up := &uploads{next: baseTransport(o.Transport)}
	o.Transport = up
	opts := o.remote(ctx)
	if updates != nil {
		opts = append(opts, remote.WithProgress(updates))
	}
	if err := remote.Write(r, img, opts...); err != nil {
		return up.n.Load(), fmt.Errorf("pushing %s: %w", ref, err)
	}
	return up.n.Load(), nil
}

// uploads counts the request bodies of uploads (PATCH and PUT).
type uploads struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (u *uploads) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && (req.Method == http.MethodPatch || req.Method == http.MethodPut) {
		req = req.Clone(req.Context())
		req.Body = &countedBody{ReadCloser: req.Body, n: &u.n}
	}
	return u.next.RoundTrip(req)
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}
