package registry

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

//go:embed presets.conf
var builtinPresets string

// Presets maps a preset's name to its pip requirement specifiers.
type Presets map[string][]string

// BuiltinPresets are the presets shipped with ds01.
func BuiltinPresets() Presets {
	p, err := ParsePresets(builtinPresets)
	if err != nil {
		panic("built-in presets: " + err.Error()) // a test keeps this from happening
	}
	return p
}

var presetName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ParsePresets reads "name: spec spec …" lines; '#' starts a comment.
func ParsePresets(data string) (Presets, error) {
	p := Presets{}
	for i, line := range strings.Split(data, "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, specs, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || !presetName.MatchString(name) || len(strings.Fields(specs)) == 0 {
			return nil, fmt.Errorf("presets line %d: %q: want \"name: package package …\"", i+1, line)
		}
		if _, dup := p[name]; dup {
			return nil, fmt.Errorf("presets line %d: preset %q given twice", i+1, name)
		}
		p[name] = strings.Fields(specs)
	}
	return p, nil
}

// Expand returns the specifiers of the named presets, or an error naming
// the unknown one and the choices.
func (p Presets) Expand(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		specs, ok := p[n]
		if !ok {
			var have []string
			for k := range p {
				have = append(have, k)
			}
			slices.Sort(have)
			return nil, fmt.Errorf("no preset %q; choose from: %s", n, strings.Join(have, ", "))
		}
		out = append(out, specs...)
	}
	return out, nil
}
