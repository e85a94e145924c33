package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/layers"
)

// Cache is ds01's on-disk cache. It has one writer: the user running ds01
// (root, for every user that root or a sudo rule builds for), which
// OpenCache checks (see CheckTrust). Every file appears under its final
// name complete or not at all (written to a temporary file in the same
// directory, then renamed), and what is reused is checked against a
// digest on every read: the files index against the digest written beside
// it, package content against the digest in its name.
type Cache struct {
	Dir string
}

// OpenCache opens the cache at dir (see CacheDir), creating it, and
// refuses one that anyone but its user could have written (CheckTrust).
func OpenCache(dir string) (*Cache, error) {
	// Checked before ds01 adds anything (to a cache that is there, or
	// under the directories that will hold a new one), and once made.
	if err := CheckTrust(dir); err != nil {
		return nil, err
	}
	// Owner-writable only: a cache shared by writing is how one user
	// plants what another user's image is built from.
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o755); err != nil {
		return nil, fmt.Errorf("creating cache %s: %w (set DS01_CACHE to a writable directory)", dir, err)
	}
	if err := CheckTrust(dir); err != nil {
		return nil, err
	}
	return &Cache{Dir: dir}, nil
}

var hexKey = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)

// MaxFilesIndex bounds a files index read back: it holds the account files
// and /etc/skel of one base, each already bounded by layers.MaxFileSize.
const MaxFilesIndex = 256 << 20

func (c *Cache) filesPath(key string) (string, error) {
	if !hexKey.MatchString(key) {
		return "", fmt.Errorf("files index key %q is not a sha256 digest", key)
	}
	return filepath.Join(c.Dir, "files", key[len(key)-64:]+".tar"), nil
}

// Files returns the base files indexed for a base image (by its image ID
// or digest), so that a second build on one base reads no layer and
// starts no container. A missing, unreadable or altered index (its bytes
// no longer match the digest written beside it) is a miss, and the next
// build writes it again.
func (c *Cache) Files(key string) (*layers.Files, bool) {
	p, err := c.filesPath(key)
	if err != nil {
		return nil, false
	}
	sum, err := ReadRegular(p+".sha256", 128)
	if err != nil {
		return nil, false
	}
	data, err := ReadRegular(p, MaxFilesIndex)
	if err != nil || strings.TrimSpace(string(sum)) != digestOf(data) {
		return nil, false
	}
	fs, err := layers.ReadFilesTar(bytes.NewReader(data))
	if err != nil {
		return nil, false
	}
	return fs, true
}

// PutFiles stores the files index of a base and its digest.
func (c *Cache) PutFiles(key string, fs *layers.Files) error {
	p, err := c.filesPath(key)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := fs.WriteTar(&b); err != nil {
		return err
	}
	if err := WriteFileAtomic(p, b.Bytes()); err != nil {
		return err
	}
	return WriteFileAtomic(p+".sha256", []byte(digestOf(b.Bytes())+"\n"))
}

func digestOf(data []byte) string {
	s := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(s[:])
}

// WriteFileAtomic writes data under path (mode 0644) so that no reader
// sees a partial file: see CreateAtomic.
func WriteFileAtomic(path string, data []byte) error {
	p, err := CreateAtomic(path, 0o644)
	if err != nil {
		return err
	}
	if _, err := p.Write(data); err != nil {
		p.Abort()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return p.Commit()
}

// CreateAtomic starts the one way ds01 writes a file that must not be
// seen half done: a temporary file made with O_EXCL beside path, reached
// without links, then synced and renamed over it by Commit (or dropped by
// Abort). It is identity/asuser's, with this process's own rights; writes
// into a user's home use the same with the user's.
func CreateAtomic(path string, mode os.FileMode) (*asuser.Pending, error) {
	d, err := asuser.OpenDir(asuser.Cred{}, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Create(filepath.Base(path), mode)
}

// ErrNotRegular is a cache entry that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// OpenRegular opens path for reading without following a final link and
// without blocking, and only if it is a regular file.
func OpenRegular(path string) (*os.File, int64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	return f, st.Size, nil
}

// ReadRegular reads a regular file (see OpenRegular) of at most limit bytes.
func ReadRegular(path string, limit int64) ([]byte, error) {
	f, size, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d ds01 reads there", path, size, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = fmt.Errorf("%s: more than the %d bytes ds01 reads there", path, limit)
	}
	return data, err
}

// ErrDigest is cached content whose bytes do not match its digest.
var ErrDigest = errors.New("cached content does not match its digest")

// VerifyFile re-hashes the regular file at path against want (a sha256
// hex digest).
func VerifyFile(path, want string) (size int64, err error) {
	f, _, err := OpenRegular(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return 0, fmt.Errorf("%s: %w (sha256 %s, want %s)", path, ErrDigest, got, want)
	}
	return n, nil
}
