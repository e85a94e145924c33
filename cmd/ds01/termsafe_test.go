package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ds01/ds01/internal/limits"
	"github.com/ds01/ds01/internal/testbed"
)

// A package manager's line reaches the terminal escaped; ds01's own
// "clear the line" stays; a line without end is cut, not buffered.
func TestLastLine(t *testing.T) {
	var out bytes.Buffer
	l := &lastLine{w: &out}
	l.Write([]byte("Get:1 http://deb \x1b]0;owned\x07\x1b[31mred\n"))
	if got := out.String(); got != "\r\x1b[K  Get:1 http://deb \\x1b]0;owned\\x07\\x1b[31mred" {
		t.Errorf("shown %q", got)
	}
	chunk := bytes.Repeat([]byte("a"), 1<<20)
	for range 10 {
		if n, err := l.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if len(l.partial) > int(limits.OutputLine.Max) || cap(l.partial) > 4*int(limits.OutputLine.Max) {
		t.Errorf("a line without end holds %d bytes (cap %d)", len(l.partial), cap(l.partial))
	}
	out.Reset()
	l.Write([]byte("\rdone\n"))
	if !strings.Contains(out.String(), "aaa...") || !strings.Contains(out.String(), "  done") {
		t.Errorf("after the long line: %q", out.String())
	}
}

// base list shows fields that came from a registry (the platform, from
// the base's config) escaped.
func TestBaseListEscapes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds ds01")
	}
	cache := t.TempDir()
	os.MkdirAll(filepath.Join(cache, "oci", "blobs", "sha256"), 0o755)
	refs := `{"example.com/x:1":{"ref":"example.com/x:1","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1,"last_used":"2025-01-01T00:00:00Z","platform":"linux/\u001b]0;owned\u0007amd64"}}`
	os.WriteFile(filepath.Join(cache, "oci", "refs.json"), []byte(refs), 0o644)
	c := exec.Command(testbed.Binary(t), "base", "list")
	c.Env = append(os.Environ(), "DS01_CACHE="+cache)
	out, err := c.CombinedOutput()
	if err != nil || bytes.ContainsRune(out, 0x1b) || bytes.ContainsRune(out, 0x07) || !strings.Contains(string(out), `linux/\x1b]0;owned\x07amd64`) {
		t.Errorf("base list: %v\n%q", err, out)
	}
}
