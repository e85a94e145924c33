package policy

import (
	"fmt"
	"strconv"
	"time"

	units "github.com/docker/go-units"
)

// Bytes is a size written as "64GiB", "512m" or a number of bytes.
type Bytes int64

// UnmarshalText reads sizes as Docker's --memory does (units.RAMInBytes:
// k, m, g, t are powers of 1024).
func (b *Bytes) UnmarshalText(text []byte) error {
	n, err := units.RAMInBytes(string(text))
	if err != nil {
		return fmt.Errorf("size %q: %w", text, err)
	}
	if n < 0 {
		return fmt.Errorf("size %q is negative", text)
	}
	*b = Bytes(n)
	return nil
}

// MarshalText writes the size in bytes.
func (b Bytes) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(b), 10)), nil }

// Duration is a time written as Go writes it: "2h", "90m", "0".
type Duration time.Duration

// UnmarshalText reads a non-negative Go duration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("duration %q: %w (write it like \"2h\" or \"90m\")", text, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }
