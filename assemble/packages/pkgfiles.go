package packages

import (
	"archive/tar"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/registry"
)

// What the install container gives back is the base's output: the base's
// own apt, pip and python ran as root there. So nothing of the host is
// mounted writable into it. Its inputs are one read-only directory ds01
// made for the run (the request, and the wheels and .debs it may use,
// each re-hashed first); its results are taken through the Docker API as
// a tar stream of which only regular entries with the expected names are
// read, each under a cap, and wheels and .debs go into the cache by
// their digest, never by their name, with a mode ds01 sets.

// Limits on what an install gives back, and why.
const (
	// maxReport bounds apt.txt and pip.json: a few thousand lines.
	maxReport = 4 << 20
	// maxPackageFile bounds one wheel or .deb: the largest CUDA wheels
	// (torch, nvidia-cudnn) are under 3 GiB.
	maxPackageFile = 8 << 30
	// maxPackageFiles and maxPackageBytes bound one install's downloads
	// (a CUDA framework with its dependencies is about 200 files, 10 GiB).
	maxPackageFiles = 5000
	maxPackageBytes = 64 << 30
	// maxAptLists bounds one base's apt lists (Debian main with updates,
	// uncompressed: a few hundred MB).
	maxAptLists = 2 << 30
)

// CachedFile is a wheel or .deb kept in ds01's cache by its digest, under
// the name pip or apt knows it by.
type CachedFile struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

var packageFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~%-]{0,200}\.(whl|deb)$`)

func (f CachedFile) valid() error {
	if !packageFileName.MatchString(f.Name) || len(f.SHA256) != 64 || strings.Trim(f.SHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("cached package file %q (sha256 %q) is not a wheel or .deb named by its digest", f.Name, f.SHA256)
	}
	return nil
}

// installRun is one install's directory in the cache (the same filesystem,
// so cached files are hard-linked into it); its in/ is mounted read-only.
type installRun struct {
	dir string
}

func newRun(c *registry.Cache) (*installRun, error) {
	runs := packagesDir(c, "runs")
	if err := os.MkdirAll(runs, 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", runs, err)
	}
	removeStaleRuns(runs)
	b := make([]byte, 8)
	rand.Read(b)
	dir := filepath.Join(runs, hex.EncodeToString(b))
	for _, d := range []string{dir, filepath.Join(dir, "in"), filepath.Join(dir, "in", "wheels"), filepath.Join(dir, "in", "debs")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("making the install's directory: %w", err)
		}
	}
	return &installRun{dir: dir}, nil
}

// removeStaleRuns removes what an install killed a day ago left.
func removeStaleRuns(runs string) {
	ents, _ := os.ReadDir(runs)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			os.RemoveAll(filepath.Join(runs, e.Name()))
		}
	}
}

func (r *installRun) in(parts ...string) string {
	return filepath.Join(append([]string{r.dir, "in"}, parts...)...)
}

func (r *installRun) remove() { os.RemoveAll(r.dir) }

// stageWheels copies the regular *.whl files of the user's wheel
// directory into the run, each opened with the caller's own rights (so
// only what they could read themselves comes along), and returns them by
// digest.
func (r *installRun) stageWheels(cred asuser.Cred, dir string) ([]CachedFile, error) {
	refuse := func(err error) error {
		return fmt.Errorf("--wheels %s: %w (rule: ds01 reads a wheel directory with your own rights, so nothing you could not read goes into an image; give a directory you can read)", dir, err)
	}
	// The checked directory is held open and every wheel opened beneath
	// its descriptor: a parent swapped for a link after the check leads
	// nowhere else.
	h, err := asuser.OpenUserDir(cred, dir, asuser.Read)
	if err != nil {
		return nil, refuse(err)
	}
	defer h.Close()
	var listing *os.File
	if err := cred.Do(func() error {
		fd, err := unix.Openat(h.FD(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		listing = os.NewFile(uintptr(fd), h.Path)
		return err
	}); err != nil {
		return nil, refuse(err)
	}
	defer listing.Close()
	ents, err := listing.ReadDir(-1)
	if err != nil {
		return nil, refuse(err)
	}
	dst := r.in("find-links")
	if err := os.Mkdir(dst, 0o755); err != nil {
		return nil, err
	}
	var files []CachedFile
	var total int64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".whl") || !packageFileName.MatchString(e.Name()) {
			continue
		}
		if len(files) == maxPackageFiles {
			return nil, refuse(fmt.Errorf("more than %d wheels", maxPackageFiles))
		}
		f, n, err := copyAsUser(cred, int(listing.Fd()), e.Name(), filepath.Join(dst, e.Name()), maxPackageBytes-total)
		if errors.Is(err, asuser.ErrNotRegular) {
			continue
		}
		if err != nil {
			return nil, refuse(err)
		}
		total += n
		files = append(files, f)
	}
	return files, nil
}

// copyAsUser opens name beneath dirfd as cred (no link, no blocking, regular) and
// copies at most limit bytes of it to a new file dst, made by ds01.
func copyAsUser(cred asuser.Cred, dirfd int, name, dst string, limit int64) (CachedFile, int64, error) {
	src := name
	var f *os.File
	err := cred.Do(func() error {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f = os.NewFile(uintptr(fd), src)
		return nil
	})
	if err != nil {
		return CachedFile{}, 0, fmt.Errorf("%s: %w", filepath.Base(src), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return CachedFile{}, 0, err
	}
	if !fi.Mode().IsRegular() {
		return CachedFile{}, 0, asuser.ErrNotRegular
	}
	limit = min(limit, maxPackageFile)
	if fi.Size() > limit {
		return CachedFile{}, 0, fmt.Errorf("%s: %d bytes, more than the %d ds01 takes", filepath.Base(src), fi.Size(), limit)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return CachedFile{}, 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(f, limit+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		err = fmt.Errorf("%s grew past %d bytes while read", filepath.Base(src), limit)
	}
	return CachedFile{Name: filepath.Base(src), SHA256: hex.EncodeToString(h.Sum(nil))}, n, err
}

// linkCached puts the cached files a request may use into the run, each
// re-hashed first. A file missing or altered is left out (pip or apt then
// downloads it), and listed in missing.
func (r *installRun) linkCached(c *registry.Cache, files []CachedFile) (linked []CachedFile, missing []string) {
	for _, f := range files {
		p, _, err := c.CheckContent(f.SHA256)
		sub := "wheels"
		if strings.HasSuffix(f.Name, ".deb") {
			sub = "debs"
		}
		if err == nil {
			err = os.Link(p, r.in(sub, f.Name))
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			missing = append(missing, f.Name)
			continue
		}
		linked = append(linked, f)
	}
	return linked, missing
}

// installOutput is what an install reported.
type installOutput struct {
	Apt, Pip []byte // apt.txt and pip.json; nil when absent
	HasApt   bool
	Files    []CachedFile
	Skipped  []string // entries that were not regular .whl/.deb files
}

// readInstallOutput reads the archive of the container's /ds01/out:
// regular entries only, each under its cap; put stores one wheel or .deb.
func readInstallOutput(r io.Reader, put func(io.Reader) (string, int64, error)) (*installOutput, error) {
	out := &installOutput{}
	tr := tar.NewReader(io.LimitReader(r, maxPackageBytes+64<<20))
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the install's results: %w", err)
		}
		name := path.Clean(h.Name)
		dir, base := path.Split(name)
		regular := h.Typeflag == tar.TypeReg
		switch {
		case name == "out" || name == "out/wheels" || name == "out/debs" || name == "out/debs/partial" || strings.HasPrefix(name, "out/debs/partial/") || name == "out/debs/lock":
		case (name == "out/apt.txt" || name == "out/pip.json") && regular:
			if h.Size > maxReport {
				return nil, fmt.Errorf("the install's %s is %d bytes, more than the %d ds01 reads", base, h.Size, maxReport)
			}
			data, err := io.ReadAll(io.LimitReader(tr, maxReport))
			if err != nil {
				return nil, fmt.Errorf("reading the install's %s: %w", base, err)
			}
			if base == "apt.txt" {
				out.Apt, out.HasApt = data, true
			} else {
				out.Pip = data
			}
		case regular && (dir == "out/wheels/" && strings.HasSuffix(base, ".whl") || dir == "out/debs/" && strings.HasSuffix(base, ".deb")) && packageFileName.MatchString(base):
			total += h.Size
			if h.Size > maxPackageFile || total > maxPackageBytes || len(out.Files) == maxPackageFiles {
				return nil, fmt.Errorf("the install downloaded more than ds01 keeps (%d files, %d bytes in all, %d bytes a file)", maxPackageFiles, int64(maxPackageBytes), int64(maxPackageFile))
			}
			sum, _, err := put(io.LimitReader(tr, h.Size))
			if err != nil {
				return nil, fmt.Errorf("keeping %s: %w", base, err)
			}
			out.Files = append(out.Files, CachedFile{Name: base, SHA256: sum})
		default:
			out.Skipped = append(out.Skipped, name)
		}
	}
}

var aptListName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~+%-]{0,250}$`)

// filterAptLists reads the archive of a container's /var/lib/apt/lists
// and writes one of its regular files only (apt's indexes: no links,
// devices or directories but lists/ and lists/partial/, which apt needs),
// with modes, owners and times ds01 sets.
func filterAptLists(r io.Reader, w io.Writer) error {
	tr := tar.NewReader(io.LimitReader(r, maxAptLists+64<<20))
	tw := tar.NewWriter(w)
	for _, d := range []string{"lists/", "lists/partial/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("reading the base's apt lists: %w", err)
		}
		dir, base := path.Split(path.Clean(h.Name))
		if h.Typeflag != tar.TypeReg || dir != "lists/" || base == "lock" || !aptListName.MatchString(base) {
			continue
		}
		if total += h.Size; total > maxAptLists {
			return fmt.Errorf("the base's apt lists are more than the %d bytes ds01 keeps", int64(maxAptLists))
		}
		if err := tw.WriteHeader(&tar.Header{Name: "lists/" + base, Typeflag: tar.TypeReg, Mode: 0o644, Size: h.Size, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, tr, h.Size); err != nil {
			return fmt.Errorf("reading the base's apt lists: %w", err)
		}
	}
}

// aptListsPointer is the file that names a base's apt lists by digest.
func aptListsPointer(c *registry.Cache, baseID string) string {
	return packagesDir(c, "apt-lists", strings.TrimPrefix(baseID, "sha256:")[:16]+".sha256")
}

// cachedAptLists opens the apt lists kept for a base, re-hashed first.
func cachedAptLists(c *registry.Cache, baseID string) (io.ReadCloser, error) {
	sum, err := registry.ReadRegular(aptListsPointer(c, baseID), 128)
	if err != nil {
		return nil, err
	}
	p, _, err := c.CheckContent(strings.TrimSpace(string(sum)))
	if err != nil {
		return nil, err
	}
	f, _, err := registry.OpenRegular(p)
	return f, err
}

// putAptLists keeps a base's apt lists, read from the archive of the
// container's /var/lib/apt/lists through filterAptLists.
func putAptLists(c *registry.Cache, baseID string, archive io.Reader) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(filterAptLists(archive, pw)) }()
	sum, _, err := c.PutContent(pr, maxAptLists+64<<20)
	pr.CloseWithError(err)
	if err != nil {
		return err
	}
	p := aptListsPointer(c, baseID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return registry.WriteFileAtomic(p, []byte(sum+"\n"))
}
