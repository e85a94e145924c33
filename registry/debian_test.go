package registry

import (
	"reflect"
	"testing"
)

func TestParseSources(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   string
		deb822 bool
		want   []Source
	}{
		{"deb822", "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n", true,
			[]Source{{URI: "http://mirror.example/debian", Suites: []string{"bookworm", "bookworm-updates"}}}},
		{"deb822 disabled", "Enabled: no\nTypes: deb\nURIs: http://x.example/debian\nSuites: bookworm\n", true, nil},
		{"one-line", "# deb http://old.example/debian buster main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\ndeb-src http://s.example/debian bookworm main\ndeb http://n.example/debian bookworm-security main\n", false,
			[]Source{{URI: "http://m.example/debian", Suites: []string{"bookworm"}}, {URI: "http://n.example/debian", Suites: []string{"bookworm-security"}}}},
		{"broken options", "deb [arch=amd64 http://m.example/debian bookworm\n", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseSources(tc.data, tc.deb822); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseSources(f *testing.F) {
	f.Add("Types: deb\nURIs: http://m/debian\nSuites: bookworm\n", true)
	f.Add("deb [x=y] http://m/debian bookworm main\n", false)
	f.Fuzz(func(t *testing.T, data string, deb822 bool) {
		for _, s := range ParseSources(data, deb822) {
			if s.URI == "" {
				t.Fatalf("empty URI from %q", data)
			}
		}
	})
}
