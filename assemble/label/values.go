package label

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// AIME's mlc reads a container's labels from `docker ps --format
// {{.Labels}}`, which joins them as k=v,k=v, and splits that string on ','
// alone: one comma in any value (a container's labels include its
// image's) and `mlc list` fails for every container on the server. So no
// value ds01 writes carries a comma: values that may hold one are
// percent-encoded (',' as %2C, '%' as %25), which keeps them readable and
// reversible.

// Escape is s as a label value without commas.
func Escape(s string) string {
	if !strings.ContainsAny(s, ",%") {
		return s
	}
	return strings.NewReplacer("%", "%25", ",", "%2C").Replace(s)
}

// Unescape reverses Escape; anything else is returned as it is.
func Unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	return strings.NewReplacer("%2C", ",", "%2c", ",", "%25", "%").Replace(s)
}

// EscapeAll applies Escape to every value of m, in place.
func EscapeAll(m map[string]string) {
	for k, v := range m {
		m[k] = Escape(v)
	}
}

// FormatLayers is the Layers value: one MEDIATYPE;DIGEST;SIZE
// per layer, separated by spaces (JSON would put commas in the label).
func FormatLayers(descs []v1.Descriptor) string {
	parts := make([]string, len(descs))
	for i, d := range descs {
		parts[i] = fmt.Sprintf("%s;%s;%d", d.MediaType, d.Digest, d.Size)
	}
	return strings.Join(parts, " ")
}

// ParseLayers reads FormatLayers' form.
func ParseLayers(rec string) ([]v1.Descriptor, error) {
	fields := strings.Fields(rec)
	descs := make([]v1.Descriptor, 0, len(fields))
	for i, f := range fields {
		mt, rest, ok1 := strings.Cut(f, ";")
		dg, size, ok2 := strings.Cut(rest, ";")
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("layer %d: %q is not MEDIATYPE;DIGEST;SIZE", i, f)
		}
		h, err := v1.NewHash(dg)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("layer %d: size %q: %w", i, size, err)
		}
		descs = append(descs, v1.Descriptor{MediaType: types.MediaType(mt), Digest: h, Size: n})
	}
	return descs, nil
}

// exactly the n layers of the image it labels.
func ParseLayersRecord(rec string, n int) ([]v1.Descriptor, error) {
	var descs []v1.Descriptor
	var err error
	if strings.HasPrefix(rec, "[") {
		// The JSON form of images made before labels lost their commas.
		err = json.Unmarshal([]byte(rec), &descs)
	} else {
		descs, err = ParseLayers(rec)
	}
	if err != nil {
		return nil, fmt.Errorf("reading label %s: %w", Layers, err)
	}
	if len(descs) != n {
		return nil, fmt.Errorf("label %s names %d layers, the image has %d", Layers, len(descs), n)
	}
	for i, d := range descs {
		if d.Size <= 0 || d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 || d.MediaType == "" {
			return nil, fmt.Errorf("label %s: layer %d is not a whole descriptor", Layers, i)
		}
	}
	return descs, nil
}
