package testbed

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Source is one Debian repository named by the machine's apt configuration.
type Source struct {
	URI    string
	Suites []string
}

// ParseSources reads apt sources, in the deb822 format of *.sources files
// or the one-line format of *.list files, keeping "deb" (binary) entries.
func ParseSources(data string, deb822 bool) []Source {
	var out []Source
	if !deb822 {
		for _, line := range strings.Split(data, "\n") {
			line, _, _ = strings.Cut(line, "#")
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			f = f[1:]
			if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=…]
				i := slices.IndexFunc(f, func(s string) bool { return strings.HasSuffix(s, "]") })
				if i < 0 || i+2 >= len(f) {
					continue
				}
				f = f[i+1:]
			}
			out = append(out, Source{URI: f[0], Suites: []string{f[1]}})
		}
		return out
	}
	for _, stanza := range strings.Split(data, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			out = append(out, Source{URI: uri, Suites: strings.Fields(fields["suites"])})
		}
	}
	return out
}

// Mirror returns the Debian archive this machine's apt uses: the first
// source whose suites include a release and not only security updates. It
// is read at run time so that no mirror host is written into the project.
func Mirror() (string, error) {
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join("/etc/apt/sources.list.d", pat))
		files = append(files, m...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range ParseSources(string(data), strings.HasSuffix(f, ".sources")) {
			for _, suite := range s.Suites {
				if !strings.Contains(suite, "-") && strings.Contains(s.URI, "debian") && !strings.Contains(s.URI, "security") {
					return s.URI, nil
				}
			}
		}
	}
	return "", errors.New("no Debian archive in /etc/apt/sources.list{,.d}: mmdebstrap needs one to build test bases")
}
