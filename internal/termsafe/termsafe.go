// Package termsafe makes text from outside ds01 (a base's labels and
// package-manager output, a registry's errors, names other users chose)
// harmless on a terminal: control characters, escape sequences, C1
// controls, invalid UTF-8 and bidirectional overrides are shown escaped
// (`\x1b`, `\u202e`), so that nothing but ds01 itself can set a title,
// move the cursor or colour the screen.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Line escapes everything but printable characters: for one field (a
// name, a label, a platform) that must stay on its line.
func Line(s string) string { return escape(s, false) }

// Text is Line that keeps newlines and tabs: for messages of several lines
// (an error that quotes a registry's answer or a package manager's tail).
func Text(s string) string { return escape(s, true) }

func escape(s string, lines bool) string {
	if safe(s, lines) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case lines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// safe is the fast path: most text has nothing to escape.
func safe(s string, lines bool) bool {
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || unsafeRune(r) {
			if !lines || (r != '\n' && r != '\t') {
				return false
			}
		}
	}
	return true
}

// unsafeRune: C1 controls (0x9b is CSI, 0x9d OSC on terminals that take
// them) and the bidirectional controls that reorder what is shown.
func unsafeRune(r rune) bool {
	return (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// Writer passes a stream through Text: for output ds01 relays as it
// comes. A rune split across writes is held until it is whole.
type Writer struct {
	W       io.Writer
	pending []byte
}

func (w *Writer) Write(p []byte) (int, error) {
	buf := append(w.pending, p...)
	cut := len(buf) - incompleteTail(buf)
	w.pending = append([]byte(nil), buf[cut:]...)
	if _, err := io.WriteString(w.W, Text(string(buf[:cut]))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what is held back of an incomplete rune, escaped.
func (w *Writer) Flush() error {
	p := w.pending
	w.pending = nil
	_, err := io.WriteString(w.W, Text(string(p)))
	return err
}

// incompleteTail is how many bytes at the end of b begin a UTF-8 sequence
// that more bytes could complete.
func incompleteTail(b []byte) int {
	for n := 1; n <= 3 && n <= len(b); n++ {
		c := b[len(b)-n]
		if c < 0x80 {
			return 0
		}
		if c >= 0xc0 { // a lead byte: is its sequence longer than what is here?
			need := 2
			if c >= 0xe0 {
				need = 3
			}
			if c >= 0xf0 {
				need = 4
			}
			if need > n && !utf8.FullRune(b[len(b)-n:]) {
				return n
			}
			return 0
		}
	}
	return 0
}
