package registry

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
)

// CatalogEntry is one framework image.
type CatalogEntry struct {
	Framework string // as written: Pytorch, Tensorflow, …
	Version   string
	Arch      string // GPU architecture family: CUDA_ADA, CUDA_AMPERE, …
	Image     string
}

func (e CatalogEntry) String() string {
	return fmt.Sprintf("%s %s (%s): %s", e.Framework, e.Version, e.Arch, e.Image)
}

//go:embed aime.catalog
var builtinCatalog string

// BuiltinCatalog is the catalog shipped with ds01.
func BuiltinCatalog() []CatalogEntry {
	c, err := ParseCatalog(builtinCatalog)
	if err != nil {
		panic("built-in catalog: " + err.Error()) // a test keeps this from happening
	}
	return c
}

// ParseCatalog reads AIME's ml_images.repo format: one image a line,
// "Framework, version, architecture, image"; blank lines and lines starting
// with '#' are skipped. A malformed line is an error naming it.
func ParseCatalog(data string) ([]CatalogEntry, error) {
	var out []CatalogEntry
	for i, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 4 {
			return nil, fmt.Errorf("catalog line %d: %q: want 4 comma-separated fields (framework, version, architecture, image), got %d", i+1, line, len(f))
		}
		for j := range f {
			f[j] = strings.TrimSpace(f[j])
			if f[j] == "" || strings.ContainsAny(f[j], " \t") {
				return nil, fmt.Errorf("catalog line %d: %q: field %d is empty or has spaces", i+1, line, j+1)
			}
		}
		out = append(out, CatalogEntry{Framework: f[0], Version: f[1], Arch: f[2], Image: f[3]})
	}
	return out, nil
}

// Pick finds the one entry for a framework (any case), version and, when
// several architectures have that version, architecture. Anything short
// of exactly one match is an error that lists the choices.
func Pick(c []CatalogEntry, framework, version, arch string) (CatalogEntry, error) {
	var fw []CatalogEntry
	for _, e := range c {
		if strings.EqualFold(e.Framework, framework) {
			fw = append(fw, e)
		}
	}
	if len(fw) == 0 {
		var names []string
		for _, e := range c {
			if !slices.Contains(names, strings.ToLower(e.Framework)) {
				names = append(names, strings.ToLower(e.Framework))
			}
		}
		return CatalogEntry{}, fmt.Errorf("no framework %q in the catalog; it has: %s", framework, strings.Join(names, ", "))
	}
	var m []CatalogEntry
	for _, e := range fw {
		if (version == "" || e.Version == version) && (arch == "" || strings.EqualFold(e.Arch, arch)) {
			m = append(m, e)
		}
	}
	switch {
	case len(m) == 1:
		return m[0], nil
	case len(m) == 0:
		return CatalogEntry{}, fmt.Errorf("no %s %s%s in the catalog; choose one of:\n  %s", framework, version, archSuffix(arch), list(fw))
	case version == "":
		return CatalogEntry{}, fmt.Errorf("say which %s version with --version; the catalog has:\n  %s", framework, list(m))
	default:
		return CatalogEntry{}, fmt.Errorf("%s %s is built for several GPU architectures; choose one with --arch:\n  %s", framework, version, list(m))
	}
}

func archSuffix(a string) string {
	if a == "" {
		return ""
	}
	return " for " + a
}

func list(es []CatalogEntry) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.String()
	}
	return strings.Join(s, "\n  ")
}
