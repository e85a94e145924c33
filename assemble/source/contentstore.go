package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/ds01/ds01/registry"
)

// maxBlob bounds the manifests, indexes and configs read from the content
// store; real ones are a few KB.
const maxBlob = 4 << 20

// usableSocket says whether this process may connect to the socket at path
// (root, as a rule: containerd's socket is 0660 root:root).
func usableSocket(path string) bool {
	return path != "" && syscall.Access(path, 2 /* W_OK */) == nil
}

// contentStoreImage reads, from the containerd content store of Docker's
// namespace "moby", the manifest and config of the image whose Docker ID
// (its target's digest) is id, and checks that every layer blob it names
// is present. The result describes the layers exactly as the engine holds
// them; their bytes are never read.
func contentStoreImage(ctx context.Context, socket, id string) (*daemonImage, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", socket, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "containerd-namespace", "moby"), 10*time.Second)
	defer cancel()
	images, content := imagesapi.NewImagesClient(conn), contentapi.NewContentClient(conn)
	list, err := images.List(ctx, &imagesapi.ListImagesRequest{Filters: []string{"target.digest==" + id}})
	if err != nil {
		return nil, fmt.Errorf("listing images in containerd at %s: %w", socket, err)
	}
	if len(list.Images) == 0 || list.Images[0].Target == nil {
		return nil, fmt.Errorf("containerd at %s holds no image %s in namespace moby", socket, id)
	}
	target := list.Images[0].Target
	read := func(dg string) ([]byte, error) {
		stream, err := content.Read(ctx, &contentapi.ReadContentRequest{Digest: dg})
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("reading %s from containerd: %w", dg, err)
			}
			if b.Len()+len(resp.Data) > maxBlob {
				return nil, fmt.Errorf("%s in containerd is over %d bytes; not a manifest or config", dg, maxBlob)
			}
			b.Write(resp.Data)
		}
		sum := sha256.Sum256(b.Bytes())
		if "sha256:"+hex.EncodeToString(sum[:]) != dg {
			return nil, fmt.Errorf("%s read from containerd does not match its digest", dg)
		}
		return b.Bytes(), nil
	}
	mdg, mt := target.Digest, types.MediaType(target.MediaType)
	if mt.IsIndex() {
		raw, err := read(mdg)
		if err != nil {
			return nil, err
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", mdg, err)
		}
		m, err := registry.HostManifest(idx.Manifests)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", target.Digest, err)
		}
		mdg, mt = m.Digest.String(), m.MediaType
	}
	if !mt.IsImage() {
		return nil, fmt.Errorf("image %s: %s is not an image manifest", id, mt)
	}
	rawM, err := read(mdg)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawM))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", mdg, err)
	}
	rawC, err := read(m.Config.Digest.String())
	if err != nil {
		return nil, err
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(rawC, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest %s names %d layers, its config %d", mdg, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	for _, l := range m.Layers {
		info, err := content.Info(ctx, &contentapi.InfoRequest{Digest: l.Digest.String()})
		if err != nil {
			return nil, fmt.Errorf("layer %s is not in containerd's content store: %w", l.Digest, err)
		}
		if info.Info.Size != l.Size {
			return nil, fmt.Errorf("layer %s: %d bytes in containerd, the manifest says %d", l.Digest, info.Info.Size, l.Size)
		}
	}
	descs := make([]v1.Descriptor, len(m.Layers))
	for i, l := range m.Layers {
		descs[i] = v1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
	}
	return &daemonImage{raw: rawC, cfg: &cfg, descs: descs, mediaType: m.MediaType}, nil
}
