package fake_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/engine/fake"
)

// FuzzImageLoad feeds any archive to both stores: the answer is a stream
// of JSON messages, never a panic, and whatever was loaded can be
// inspected, listed, read from and saved.
func FuzzImageLoad(f *testing.F) {
	t := &testing.T{}
	bl := baseLayer(t)
	base := imageOf(t, "base", bl)
	user := imageOf(t, "user", bl, userLayer(t, "alice"))
	baseID, _ := bl.DiffID()
	for _, omit := range []func(v1.Hash) bool{nil, func(h v1.Hash) bool { return h == baseID }} {
		var b bytes.Buffer
		if err := engine.WriteArchive(&b, user, "ds01-5/p:latest", omit); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, archive []byte) {
		ctx := context.Background()
		for _, store := range stores {
			e := fake.New(store)
			if _, err := e.AddImage(base, "base:1"); err != nil {
				t.Fatal(err)
			}
			res, err := e.ImageLoad(ctx, bytes.NewReader(archive))
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(res)
			for sc.Scan() {
				var msg map[string]any
				if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
					t.Fatalf("message %q: %v", sc.Text(), err)
				}
			}
			list, err := e.ImageList(ctx, client.ImageListOptions{Manifests: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, im := range list.Items {
				if _, err := e.ImageInspect(ctx, im.ID); err != nil {
					t.Fatal(err)
				}
				for _, tag := range im.RepoTags {
					if rc, err := e.ImageSave(ctx, []string{tag}); err != nil {
						t.Fatalf("save %s: %v", tag, err)
					} else {
						rc.Close()
					}
				}
				c, err := e.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: im.ID}})
				if err != nil {
					t.Fatal(err)
				}
				e.CopyFromContainer(ctx, c.ID, client.CopyFromContainerOptions{SourcePath: "/etc"})
			}
		}
	})
}
