package ops

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01/identity"
)

// container open's command line: the user's IDs, /workspace, a login
// shell, and a command's words arriving exactly as given.
func TestShell(t *testing.T) {
	id := identity.Identity{UID: 1722830498, GID: 1722830499}
	c := container.InspectResponse{Name: "/p._.1722830498"}
	if got := Shell(id, c, true); !slices.Equal(got, []string{"docker", "exec", "-it", "-u", "1722830498:1722830499", "-w", "/workspace", "p._.1722830498", "bash", "-l"}) {
		t.Errorf("shell: %q", got)
	}
	got := Shell(id, c, false, "printf", "%s|", "it's", "a b", "$HOME")
	if got[2] != "-i" || got[len(got)-2] != "-c" {
		t.Fatalf("command: %q", got)
	}
	out, err := exec.Command("bash", "-c", got[len(got)-1]).Output()
	if err != nil || string(out) != "it's|a b|$HOME|" {
		t.Errorf("the words arrive as %q (%v), from %s", out, err, strings.Join(got, " "))
	}
}
