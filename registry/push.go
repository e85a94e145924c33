package registry

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push writes an image to a registry, the way a second server gets it.
// go-containerregistry asks the registry for each blob first and uploads
// only those it lacks (and mounts across repositories where a layer came
// from the same registry).
func Push(ctx context.Context, img v1.Image, ref string, o PullOptions) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img, o.remote(ctx)...); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}
