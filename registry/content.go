package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Package content (wheels, .debs, apt lists) is kept by its sha256 under
// <cache>/packages/sha256 and never by the name a base gave it: a build
// gets only the files its own request recorded, by digest, each re-hashed
// before use. No base can put a file under a name another build looks for.

// ErrTooLarge is content over the limit its writer set.
var ErrTooLarge = errors.New("larger than ds01 keeps")

func (c *Cache) contentDir() string { return filepath.Join(c.Dir, "packages", "sha256") }

// ContentPath is where the content with the sha256 hex digest lies.
func (c *Cache) ContentPath(sum string) (string, error) {
	if !hexKey.MatchString(sum) || len(sum) != 64 {
		return "", fmt.Errorf("content key %q is not a sha256 hex digest", sum)
	}
	return filepath.Join(c.contentDir(), sum), nil
}

// PutContent stores at most limit bytes of r under their digest: written
// to a new file (mode 0444, so nothing of a source's mode, setuid
// included, comes along), hashed as written, renamed into place.
func (c *Cache) PutContent(r io.Reader, limit int64) (sum string, size int64, err error) {
	if err := os.MkdirAll(c.contentDir(), 0o755); err != nil {
		return "", 0, fmt.Errorf("creating %s: %w", c.contentDir(), err)
	}
	tmp, err := CreateAtomic(filepath.Join(c.contentDir(), "content"), 0o444)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	if err != nil {
		tmp.Abort()
		return "", 0, err
	}
	sum = hex.EncodeToString(h.Sum(nil))
	return sum, n, tmp.CommitAs(sum)
}

// CheckContent re-hashes the content with digest sum and returns its path.
func (c *Cache) CheckContent(sum string) (string, int64, error) {
	p, err := c.ContentPath(sum)
	if err != nil {
		return "", 0, err
	}
	n, err := VerifyFile(p, sum)
	return p, n, err
}
