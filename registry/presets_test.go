package registry

import (
	"slices"
	"strings"
	"testing"
)

func TestPresets(t *testing.T) {
	p := BuiltinPresets()
	got, err := p.Expand([]string{"jupyter", "nlp"})
	if err != nil || !slices.Equal(got, []string{"jupyterlab", "ipykernel", "ipywidgets", "transformers"}) {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := p.Expand([]string{"gpu-magic"}); err == nil || !strings.Contains(err.Error(), "cv, data-science, jupyter, nlp") {
		t.Errorf("unknown preset: %v", err)
	}
	for _, bad := range []string{"nocolon pandas", "x:", "Bad: y", "a: b\na: c"} {
		if _, err := ParsePresets(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParsePresets(f *testing.F) {
	f.Add(builtinPresets)
	f.Fuzz(func(t *testing.T, data string) {
		p, err := ParsePresets(data)
		if err != nil {
			return
		}
		for name, specs := range p {
			if !presetName.MatchString(name) || len(specs) == 0 {
				t.Fatalf("bad preset %q %v", name, specs)
			}
		}
	})
}
