package pipeline

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// WrongBaseDescriptor makes d's delta loads name a wrong digest and size
// for the base's first layer, as a wrong source of descriptors would.
func WrongBaseDescriptor(d *Pipeline) {
	d.heldDescriptors = func(img v1.Image) v1.Image {
		ls, err := img.Layers()
		if err != nil || len(ls) == 0 {
			return img
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return img
		}
		adds := make([]mutate.Addendum, len(ls))
		for i, l := range ls {
			adds[i] = mutate.Addendum{Layer: l}
		}
		adds[0].Layer = wrongDescriptor{ls[0]}
		mt, err := img.MediaType()
		if err != nil {
			return img
		}
		m, err := img.Manifest()
		if err != nil {
			return img
		}
		start := mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), m.Config.MediaType)
		bad, err := mutate.Append(start, adds...)
		if err != nil {
			return img
		}
		bad, err = mutate.ConfigFile(bad, cfg)
		if err != nil {
			return img
		}
		return bad
	}
}

type wrongDescriptor struct{ v1.Layer }

func (wrongDescriptor) Digest() (v1.Hash, error) {
	return v1.NewHash("sha256:0d501d01d01d01d01d01d01d01d01d01d01d01d01d01d01d01d01d01d01d01d0")
}

func (w wrongDescriptor) Size() (int64, error) {
	n, err := w.Layer.Size()
	return n + 1, err
}
