package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/ds01/ds01/assemble/label"
)

// ErrWouldReplace is a command that would put an image over the user's
// project image without --force.
var ErrWouldReplace = errors.New("would replace your image")

// keepProjectImage refuses to put an image assembled from another one
// (container deploy NAME --image REF) over the project's image at tag,
// naming what would be lost: the work container retire --save put into
// it, and the containers made from it. The image the assembly starts from
// being the project's own is no loss.
func (d *Daemon) keepProjectImage(ctx context.Context, tag, from, fromID, name string) error {
	old, err := d.ImageInspect(ctx, tag)
	if cerrdefs.IsNotFound(err) || err == nil && old.ID == fromID {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", tag, err)
	}
	what := fmt.Sprintf("your image %s (%s, made %s", tag, old.ID, old.Created)
	if b := old.Config.Labels[label.Base]; b != "" {
		what += " on " + label.Unescape(b)
	}
	what += ")"
	if saved := d.savedLayers(ctx, tag); len(saved) > 0 {
		what += fmt.Sprintf(", which holds work saved by container retire --save (%s)", strings.Join(saved, "; "))
	}
	if users, _ := d.Images.ContainersOf(ctx, tag); len(users) > 0 {
		what += ", used by container(s) " + strings.Join(users, ", ")
	}
	return fmt.Errorf("%w: deploying %s from %s would replace %s. Nothing was changed. Deploy from your image with `ds01 container deploy %s` (no --image), give the container of %s another name, or replace your image and lose what it holds with --force",
		ErrWouldReplace, name, from, what, name, from)
}

// savedLayers describes the layers of the image at tag that container
// retire --save added, newest first, from the image's history.
func (d *Daemon) savedLayers(ctx context.Context, tag string) []string {
	hist, err := d.ImageHistory(ctx, tag)
	if err != nil {
		return nil
	}
	var out []string
	for _, h := range hist.Items {
		if s, ok := strings.CutPrefix(h.CreatedBy, savedBy); ok {
			out = append(out, "from "+s)
		}
	}
	return out
}
