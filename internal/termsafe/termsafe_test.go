package termsafe

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, line, text string }{
		{"plain text", "plain text", "plain text"},
		{"título ✓", "título ✓", "título ✓"},
		{"\x1b]0;owned\x07title", `\x1b]0;owned\x07title`, `\x1b]0;owned\x07title`},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`, `\x1b[31mred\x1b[0m`},
		{"a\nb\tc\rd", `a\nb\tc\rd`, "a\nb\tc\\rd"},
		{"csi \u009b2J", `csi \u009b2J`, `csi \u009b2J`},
		{"raw \x9b byte", `raw \x9b byte`, `raw \x9b byte`},
		{"evil\u202etxt.exe", `evil\u202etxt.exe`, `evil\u202etxt.exe`},
		{"del\x7f", `del\x7f`, `del\x7f`},
	} {
		if got := Line(tc.in); got != tc.line {
			t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.line)
		}
		if got := Text(tc.in); got != tc.text {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.text)
		}
	}
}

func TestWriterSplitsRunes(t *testing.T) {
	in := "é✓\x1b[2J𝄞 done\n"
	for cut := range len(in) {
		var b bytes.Buffer
		w := &Writer{W: &b}
		w.Write([]byte(in[:cut]))
		w.Write([]byte(in[cut:]))
		w.Flush()
		if b.String() != Text(in) {
			t.Fatalf("cut at %d: %q, want %q", cut, b.String(), Text(in))
		}
	}
}

// harmless is what may reach a terminal: valid UTF-8, no controls but
// (in Text) newline and tab, no C1 or bidi controls.
func harmless(t *testing.T, s string, lines bool) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("invalid UTF-8 in %q", s)
	}
	for _, r := range s {
		if lines && (r == '\n' || r == '\t') {
			continue
		}
		if r < 0x20 || r == 0x7f || unsafeRune(r) {
			t.Fatalf("%U left in %q", r, s)
		}
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "ok", "\x1b]0;x\x07", "\xc2\x9b", "\xe2\x80", "a\nb", "\u202e"} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, s string, cut int) {
		harmless(t, Line(s), false)
		harmless(t, Text(s), true)
		if strings.ContainsAny(Line(s), "\n\t") {
			t.Fatalf("Line kept a newline or tab: %q", Line(s))
		}
		if safe(s, true) && Text(s) != s {
			t.Fatalf("Text changed safe %q", s)
		}
		if cut < 0 || cut > len(s) {
			cut = len(s) / 2
		}
		var b bytes.Buffer
		w := &Writer{W: &b}
		w.Write([]byte(s[:cut]))
		w.Write([]byte(s[cut:]))
		w.Flush()
		harmless(t, b.String(), true)
	})
}
