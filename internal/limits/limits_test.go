package limits

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// Reader passes an input of exactly the limit and fails one byte past
// it, where io.LimitReader would end cleanly.
func TestReader(t *testing.T) {
	for _, tc := range []struct {
		n    int
		fail bool
	}{{0, false}, {9, false}, {10, false}, {11, true}, {1 << 20, true}} {
		got, err := UserFile.withMax(10).ReadAll("input", bytes.NewReader(bytes.Repeat([]byte("x"), tc.n)))
		if tc.fail != (err != nil) || (err != nil && !errors.Is(err, ErrLimit)) {
			t.Errorf("%d bytes: %v", tc.n, err)
		}
		if !tc.fail && len(got) != tc.n {
			t.Errorf("%d bytes: read %d", tc.n, len(got))
		}
		if tc.fail && len(got) > 10 {
			t.Errorf("%d bytes: kept %d, past the limit", tc.n, len(got))
		}
	}
	var e *Error
	_, err := io.ReadAll(Reader(strings.NewReader("abcdef"), 3, func() error { return &Error{Limit: Manifest, Input: "doc", Got: -1} }))
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "doc is over ds01's manifest or index size limit") {
		t.Errorf("%v", err)
	}
}

func (l Limit) withMax(m int64) Limit { l.Max = m; return l }

func TestCheck(t *testing.T) {
	if Layers.Check("img", 125) != nil {
		t.Error("125 layers refused")
	}
	err := Layers.Check("img", 126)
	if err == nil || err.Error() != "img is over ds01's number of layers limit of 125 layers (126): "+Layers.Why {
		t.Errorf("%v", err)
	}
}
