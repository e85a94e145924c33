package policy

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"
)

// Whatever Parse accepts is valid and survives being written out and
// read again unchanged; nothing makes it panic.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/full.toml", "../../../packaging/policy.toml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[limits]\ncpus = inf\n"))
	f.Add([]byte("[containers]\ncgroup_parent = \"/ds01/{uid}\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(p); err != nil {
			t.Fatalf("encoding an accepted policy: %v", err)
		}
		q, err := Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("the policy written out is refused: %v\n%s", err, buf.Bytes())
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip changed the policy:\n%+v\n%+v\n%s", p, q, buf.Bytes())
		}
	})
}
