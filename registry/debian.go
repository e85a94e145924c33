// Package registry is where base images come from outside the engine: a
// registry, ds01's on-disk cache, the AIME catalog, or, on a machine with
// none of those, Debian's own packages (assemble/source adds the engine
// and chooses among them).
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ds01/ds01/layers"
)

// Debian is a minbase built from Debian's packages with mmdebstrap: the
// base ds01 makes for itself where no registry can be reached.
type Debian struct {
	Suite    string
	Packages []string
	// AptOpts are apt settings for the build, e.g.
	// `Acquire::Check-Valid-Until "false"` for sid, whose Release file on a
	// mirror may be stale.
	AptOpts []string
}

var (
	// Bookworm is Debian 12 with Python, a CPU stand-in for a framework base.
	Bookworm = Debian{Suite: "bookworm", Packages: []string{"sudo", "bash", "python3", "python3-pip"}}
	// Bullseye has the older useradd that, like the Ubuntu releases under
	// real CUDA images, writes a sparse lastlog sized by the UID.
	Bullseye = Debian{Suite: "bullseye", Packages: []string{"sudo", "bash"}}
)

// DebianCreated is the fixed time of Debian bases: mmdebstrap honours
// SOURCE_DATE_EPOCH, so a base depends only on its inputs and the mirror.
var DebianCreated = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func (b Debian) key() string {
	in := fmt.Sprintf("v1|minbase|%s|%s|%d", b.Suite, strings.Join(b.Packages, ","), DebianCreated.Unix())
	if len(b.AptOpts) > 0 {
		in += "|" + strings.Join(b.AptOpts, "|")
	}
	sum := sha256.Sum256([]byte(in))
	return hex.EncodeToString(sum[:])[:12]
}

// Tar returns the path of the base's root filesystem tar in dir, building
// it with mmdebstrap (about 20 s) when dir does not have it. Concurrent
// processes wait for one build under a file lock; a failed build leaves
// nothing under the final name.
func (b Debian) Tar(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, b.Suite+"-"+b.key()+".tar")
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", out, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
		return out, nil
	}
	mirror, err := Mirror()
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", fmt.Errorf("building a Debian %s base needs mmdebstrap (apt-get install mmdebstrap): %w", b.Suite, err)
	}
	// mmdebstrap picks its output format from the extension.
	tmp := strings.TrimSuffix(out, ".tar") + ".partial.tar"
	args := []string{"--variant=minbase", "--include=" + strings.Join(b.Packages, ",")}
	for _, o := range b.AptOpts {
		args = append(args, "--aptopt="+o)
	}
	cmd := exec.CommandContext(ctx, "mmdebstrap", append(args, b.Suite, tmp, mirror)...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", DebianCreated.Unix()))
	// mmdebstrap reads extra sources from a stdin that is not a terminal:
	// give it an empty one.
	cmd.Stdin = nil
	if outb, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("mmdebstrap %s from %s: %w\n%s", b.Suite, mirror, err, outb)
	}
	return out, os.Rename(tmp, out)
}

// Image is the base as a one-layer image whose layer is the plain tar.
func (b Debian) Image(ctx context.Context, dir string) (v1.Image, error) {
	path, err := b.Tar(ctx, dir)
	if err != nil {
		return nil, err
	}
	l, err := layers.FromFile(path)
	if err != nil {
		return nil, err
	}
	return ImageFromLayers("debian-"+b.Suite, l)
}

// ImageFromLayers makes an image of the layers with a plain Debian-like
// config, created at DebianCreated.
func ImageFromLayers(name string, ls ...v1.Layer) (v1.Image, error) {
	// An OCI manifest, to match the plain-tar layers' OCI media type.
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range ls {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: DebianCreated}, CreatedBy: "ds01 " + name}})
		if err != nil {
			return nil, err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: DebianCreated}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Cmd = []string{"bash"}
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.title": name}
	return mutate.ConfigFile(img, cfg)
}

// Source is one Debian repository named by the machine's apt configuration.
type Source struct {
	URI    string
	Suites []string
}

// ParseSources reads apt sources, in the deb822 format of *.sources files
// or the one-line format of *.list files, keeping "deb" (binary) entries.
func ParseSources(data string, deb822 bool) []Source {
	var out []Source
	if !deb822 {
		for _, line := range strings.Split(data, "\n") {
			line, _, _ = strings.Cut(line, "#")
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			f = f[1:]
			if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=…]
				i := slices.IndexFunc(f, func(s string) bool { return strings.HasSuffix(s, "]") })
				if i < 0 || i+2 >= len(f) {
					continue
				}
				f = f[i+1:]
			}
			out = append(out, Source{URI: f[0], Suites: []string{f[1]}})
		}
		return out
	}
	for _, stanza := range strings.Split(data, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			out = append(out, Source{URI: uri, Suites: strings.Fields(fields["suites"])})
		}
	}
	return out
}

// Mirror returns the Debian archive this machine's apt uses: the first
// source whose suites include a release and not only security updates. It
// is read at run time so that no mirror host is written into the project.
func Mirror() (string, error) {
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join("/etc/apt/sources.list.d", pat))
		files = append(files, m...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range ParseSources(string(data), strings.HasSuffix(f, ".sources")) {
			for _, suite := range s.Suites {
				if !strings.Contains(suite, "-") && strings.Contains(s.URI, "debian") && !strings.Contains(s.URI, "security") {
					return s.URI, nil
				}
			}
		}
	}
	return "", errors.New("no Debian archive in /etc/apt/sources.list{,.d}: mmdebstrap needs one to build test bases")
}

// CacheDir is ds01's cache: $DS01_CACHE, else $XDG_CACHE_HOME/ds01
// (~/.cache/ds01). It has one writer (see CheckTrust): root's serves
// every user root or a sudo rule builds for.
func CacheDir() (string, error) {
	if d := os.Getenv("DS01_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory (set DS01_CACHE): %w", err)
	}
	return filepath.Join(d, "ds01"), nil
}
