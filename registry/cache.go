package registry

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/ds01/ds01/layers"
)

// Cache is ds01's on-disk cache, shareable between the users of a server:
// every file appears under its final name complete or not at all (written
// to a temporary file in the same directory, then renamed), so concurrent
// writers and an interrupted one cannot leave a partial entry.
type Cache struct {
	Dir string
}

// OpenCache opens the cache at dir (see CacheDir), creating it.
func OpenCache(dir string) (*Cache, error) {
	// Group-writable, so that a cache shared through a group works.
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o2775); err != nil {
		return nil, fmt.Errorf("creating cache %s: %w (set DS01_CACHE to a writable directory)", dir, err)
	}
	return &Cache{Dir: dir}, nil
}

var hexKey = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)

func (c *Cache) filesPath(key string) (string, error) {
	if !hexKey.MatchString(key) {
		return "", fmt.Errorf("files index key %q is not a sha256 digest", key)
	}
	return filepath.Join(c.Dir, "files", key[len(key)-64:]+".tar"), nil
}

// Files returns the base files indexed for a base image (by its image ID
// or digest), so that a second build on one base reads no layer and
// starts no container. A missing or unreadable index is a miss.
func (c *Cache) Files(key string) (*layers.Files, bool) {
	p, err := c.filesPath(key)
	if err != nil {
		return nil, false
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, false
	}
	fs, err := layers.ReadFilesTar(bytes.NewReader(data))
	if err != nil {
		return nil, false
	}
	return fs, true
}

// PutFiles stores the files index of a base.
func (c *Cache) PutFiles(key string, fs *layers.Files) error {
	p, err := c.filesPath(key)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := fs.WriteTar(&b); err != nil {
		return err
	}
	return WriteFileAtomic(p, b.Bytes())
}

// WriteFileAtomic writes data under path through a temporary file in the
// same directory and a rename, so that no reader sees a partial file.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(0o664); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
