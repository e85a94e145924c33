package deploy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy/binds"
	"github.com/ds01/ds01/identity/asuser"
)

// A base's own ds01.bind.* labels (a container inherits its image's)
// pin nothing: only a source the container binds from its pin counts.
func TestRepinIgnoresInheritedLabels(t *testing.T) {
	old := binds.PinRoot
	binds.PinRoot = filepath.Join(t.TempDir(), "binds")
	defer func() { binds.PinRoot = old }()
	labels := map[string]string{label.Bind + "data": "1:2:rw:/etc"}
	if err := Repin("c._.1000", labels, nil, asuser.Cred{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(binds.PinRoot); err == nil {
		t.Errorf("a pin was made for a label no mount uses")
	}
}
