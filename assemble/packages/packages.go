package packages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/registry"
)

// Request are what a user asks to have installed in an image.
type Request struct {
	Apt []string `json:"apt,omitempty"` // name or name=version
	Pip []string `json:"pip,omitempty"` // requirement specifiers
	// Requirements is the text of --requirements files.
	Requirements string `json:"requirements,omitempty"`
	// Constraints pin versions without asking for the packages (pip -c):
	// how a rebuild gets exactly the dependencies it had.
	Constraints []string `json:"constraints,omitempty"`
	// FindLinks is a host directory of wheels pip may install from, beside
	// its index (a site's own wheelhouse). Its wheels are copied for the
	// install with Cred's rights.
	FindLinks string `json:"find_links,omitempty"`
	// NoIndex installs pip packages only from FindLinks and Cached.
	NoIndex bool `json:"no_index,omitempty"`
	// Cached are the wheels and .debs an earlier install of this request
	// kept in ds01's cache: the only cached files the install sees.
	Cached []CachedFile `json:"cached,omitempty"`
	// Cred is whose rights read FindLinks: the caller's.
	Cred asuser.Cred `json:"-"`
}

// Empty reports whether nothing is asked for.
func (p Request) Empty() bool { return len(p.Apt) == 0 && len(p.Pip) == 0 && p.Requirements == "" }

var aptName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$`)

// Validate checks the request before anything runs.
func (p Request) Validate() error {
	if err := aptOK(p.Apt); err != nil {
		return err
	}
	if err := specsOK("--pip", p.Pip); err != nil {
		return err
	}
	if p.FindLinks != "" && !filepath.IsAbs(p.FindLinks) {
		return fmt.Errorf("wheel directory %q: give an absolute path", p.FindLinks)
	}
	if len(p.Cached) > maxPackageFiles {
		return fmt.Errorf("%d cached package files, more than the %d ds01 takes", len(p.Cached), maxPackageFiles)
	}
	for _, f := range p.Cached {
		if err := f.valid(); err != nil {
			return err
		}
	}
	return nil
}

func aptOK(names []string) error {
	for _, a := range names {
		if !aptName.MatchString(a) {
			return fmt.Errorf("--apt %q is not a Debian package name (name or name=version)", a)
		}
	}
	return nil
}

// specsOK refuses anything but a requirement specifier: a line of pip's
// requirements or constraints file that starts with '-' is an option
// (--index-url, -e, -r) and would take pip elsewhere.
func specsOK(what string, specs []string) error {
	for _, s := range specs {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "\n\r") || strings.HasPrefix(strings.TrimSpace(s), "-") {
			return fmt.Errorf("%s %q is not a requirement specifier (options belong in a --requirements file)", what, s)
		}
	}
	return nil
}

// Options say how packages are installed.
type Options struct {
	Cache *registry.Cache
	// Offline installs only from the wheels and .debs in ds01's cache.
	Offline bool
	// Output gets the package managers' own output as it comes.
	Output io.Writer
	// For is the image the layer is made for, labelled on the install
	// container.
	For string
}

// Layer is a package layer: made now or found in the cache.
type Layer struct {
	Key    string  `json:"key"`
	DiffID v1.Hash `json:"diff_id"`
	Size   int64   `json:"size"`
	// Apt and Pip are what was installed, dependencies included, pinned:
	// name=version and name==version; the Asked ones are those the user
	// named (a rebuild asks for these and constrains the rest).
	Apt      []string `json:"apt"`
	Pip      []string `json:"pip"`
	AptAsked []string `json:"apt_asked"`
	PipAsked []string `json:"pip_asked"`
	// Files are the wheels and .debs the install used, kept in ds01's
	// cache by digest: what an offline rebuild installs from.
	Files []CachedFile `json:"files,omitempty"`
	// Reused is set when the layer came from the cache, no install run.
	Reused bool `json:"-"`
	// Image is the base with the package layer, in the daemon: the base of
	// the user's image.
	Image string `json:"-"`
}

// key is the cache key of a request on a base, with the wheels of its
// wheel directory by digest (a changed wheelhouse is another request).
func (p Request) key(baseID string, findLinks []CachedFile) string {
	apt, pip := slices.Clone(p.Apt), slices.Clone(p.Pip)
	slices.Sort(apt)
	slices.Sort(pip)
	b, _ := json.Marshal(struct {
		V                 int
		Base, Reqs        string
		Wheels, Cached    []CachedFile
		Apt, Pip          []string
		Constraints       []string
		NoIndex, HasLinks bool
	}{2, baseID, p.Requirements, findLinks, p.Cached, apt, pip, p.Constraints, p.NoIndex, p.FindLinks != ""})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func packagesDir(c *registry.Cache, parts ...string) string {
	return filepath.Join(append([]string{c.Dir, "packages"}, parts...)...)
}

// notPackaged are paths a package layer never carries: apt's lists and
// archives, caches, logs, ds01's own mounts, and dpkg's and debconf's
// backup copies, which differ from run to run.
var notPackaged = []string{"/var/lib/apt/lists", "/var/cache/apt", "/var/cache/ldconfig", "/var/log", "/root/.cache", "/ds01",
	"/var/lib/dpkg/lock", "/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/triggers/Lock", "/var/cache/debconf/passwords.dat"}

func notInPackageLayer(p string) bool {
	if engine.UnderAny(engine.NotCaptured)(p) || engine.UnderAny(notPackaged)(p) {
		return true
	}
	return strings.HasSuffix(p, "-old") && (engine.Under(p, "/var/lib/dpkg") || engine.Under(p, "/var/cache/debconf"))
}

// installScript runs as root in the throwaway container: apt first, then
// pip into the base's own Python. Its inputs are /ds01/in (read-only);
// it leaves its results in the container's own /ds01/out (apt.txt,
// pip.json, the wheels and .debs used), which ds01 copies out through the
// Docker API. apt keeps its downloads there too, out of reach of a base's
// docker-clean hook.
const installScript = `set -eu
export DEBIAN_FRONTEND=noninteractive
mkdir -p /ds01/out/wheels /ds01/out/debs/partial
for f in /ds01/in/debs/*.deb; do if [ -f "$f" ]; then cp "$f" /ds01/out/debs/; fi; done
archives="-o Dir::Cache::Archives=/ds01/out/debs/"
before=$(mktemp)
dpkg-query -W -f '${Package}=${Version}\n' 2>/dev/null | sort > "$before" || true
if [ -s /ds01/in/apt.txt ]; then
  if [ -z "${DS01_OFFLINE:-}" ]; then apt-get $archives update -q; fi
  apt-get $archives install -y -q --no-install-recommends ${DS01_OFFLINE:+--no-download} $(cat /ds01/in/apt.txt)
fi
dpkg-query -W -f '${Package}=${Version}\n' 2>/dev/null | sort | comm -13 "$before" - > /ds01/out/apt.txt || true
if [ -s /ds01/in/requirements.txt ]; then
  py=$(command -v python3 || command -v python || true)
  if [ -z "$py" ]; then echo "ds01: the base has no python3 for pip packages" >&2; exit 3; fi
  links="--find-links /ds01/in/wheels"
  if [ -d /ds01/in/find-links ]; then links="$links --find-links /ds01/in/find-links"; fi
  if [ -z "${DS01_OFFLINE:-}" ]; then
    "$py" -m pip download -q ${DS01_NO_INDEX:+--no-index} -d /ds01/out/wheels $links -c /ds01/in/constraints.txt -r /ds01/in/requirements.txt
  fi
  "$py" -m pip install --no-index --find-links /ds01/out/wheels $links -c /ds01/in/constraints.txt --report /ds01/out/pip.json -r /ds01/in/requirements.txt
fi
`

// ErrInstall is an install step that failed; the message carries the
// package manager's last lines.
var ErrInstall = errors.New("installing packages failed")

// PackageLayer gives the base a layer with the packages, built by running
// one throwaway container of the base, or taken from the cache when a
// user already asked for the same packages on the same base. The result
// is loaded into the daemon as base + packages, the base of the user's
// image. The container is always removed; nothing is cached unless whole.
func (d *Installer) Layer(ctx context.Context, base *source.Base, pk Request, o Options) (*Layer, error) {
	if err := pk.Validate(); err != nil {
		return nil, err
	}
	if o.Cache == nil {
		return nil, errors.New("packages need ds01's cache")
	}
	run, err := newRun(o.Cache)
	if err != nil {
		return nil, err
	}
	defer run.remove()
	var links []CachedFile
	if pk.FindLinks != "" {
		if links, err = run.stageWheels(pk.Cred, pk.FindLinks); err != nil {
			return nil, err
		}
	}
	key := pk.key(base.ID, links)
	res := d.reusedLayer(ctx, base, key, o)
	if res == nil {
		if res, err = d.installPackages(ctx, base, pk, key, run, o); err != nil {
			return nil, err
		}
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := registry.WriteFileAtomic(packagesDir(o.Cache, "req-"+key+".json"), data); err != nil {
			return nil, err
		}
	}
	res.Image = packageImage(key)
	if d.holdsPackages(ctx, base, res) {
		return res, nil // base + packages already in the daemon
	}
	return res, d.loadPackages(ctx, base, res, o.Cache)
}

func packageImage(key string) string { return fmt.Sprintf("ds01-packages/%s:latest", key[:20]) }

// maxRequestRecord bounds a cached request's record: its pins and files.
const maxRequestRecord = 16 << 20

// reusedLayer is the layer an earlier install of the request made, when
// the daemon holds it on the base or its cached file still matches its
// diff ID (re-hashed: a corrupt file is removed and the layer made again);
// nil when there is none.
func (d *Installer) reusedLayer(ctx context.Context, base *source.Base, key string, o Options) *Layer {
	data, err := registry.ReadRegular(packagesDir(o.Cache, "req-"+key+".json"), maxRequestRecord)
	if err != nil {
		return nil
	}
	var res Layer
	if json.Unmarshal(data, &res) != nil || res.Key != key || res.DiffID.Algorithm != "sha256" || !hexKey64(res.DiffID.Hex) {
		return nil
	}
	res.Reused, res.Image = true, packageImage(key)
	if d.holdsPackages(ctx, base, &res) {
		return &res
	}
	p := packagesDir(o.Cache, "layers", res.DiffID.Hex+".tar")
	n, err := registry.VerifyFile(p, res.DiffID.Hex)
	if err == nil && n == res.Size {
		return &res
	}
	if !errors.Is(err, os.ErrNotExist) {
		if o.Output != nil {
			fmt.Fprintf(o.Output, "ds01: the cached package layer %s is damaged (%v); installing again\n", res.DiffID, err)
		}
		os.Remove(p)
	}
	return nil
}

func hexKey64(s string) bool { return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == "" }

// holdsPackages reports whether the daemon's package image is exactly the
// base's layers and the package layer.
func (d *Installer) holdsPackages(ctx context.Context, base *source.Base, res *Layer) bool {
	ins, err := d.ImageInspect(ctx, res.Image)
	if err != nil {
		return false
	}
	want := []string{}
	for _, h := range base.LayerIDs() {
		want = append(want, h.String())
	}
	return slices.Equal(ins.RootFS.Layers, append(want, res.DiffID.String()))
}

// loadPackages loads base + the package layer from the cache as res.Image.
func (d *Installer) loadPackages(ctx context.Context, base *source.Base, res *Layer, c *registry.Cache) error {
	l := layers.FromFileDigest(packagesDir(c, "layers", res.DiffID.Hex+".tar"), res.DiffID, res.Size)
	mt, err := base.Image.MediaType()
	if err != nil {
		return err
	}
	cfg, err := base.Image.ConfigFile()
	if err != nil {
		return err
	}
	img, err := mutate.Append(base.Image, mutate.Addendum{Layer: layers.ForManifest(l, mt), History: v1.History{
		Created:   cfg.Created,
		CreatedBy: "ds01 packages: " + strings.Join(append(slices.Clone(res.Apt), res.Pip...), " "),
		Comment:   "installed in a throwaway container and captured from its changes, no docker build",
	}})
	if err != nil {
		return err
	}
	// Marked as a shared package image, which no user names as a base
	// through sudo (see CheckOwnImage).
	if img, err = withLabel(img, label.PackagesKey, res.Key); err != nil {
		return err
	}
	if d.Store == engine.Containerd {
		// The user layer goes on this image next: record the descriptors
		// the engine will hold its layers under, as assemble does.
		if img, err = withLayersRecord(img); err != nil {
			return err
		}
	}
	omit := map[v1.Hash]bool{}
	for _, h := range base.LayerIDs() {
		omit[h] = true
	}
	sg, _, err := d.Stage(ctx, img, res.Image, func(h v1.Hash) bool { return omit[h] }, nil)
	if err != nil {
		return fmt.Errorf("loading the package layer onto the base: %w", err)
	}
	if err := sg.Commit(res.Image); err != nil {
		return err
	}
	return nil
}

// withLayersRecord sets the ds01.layers label of img to its own layers.
func withLayersRecord(img v1.Image) (v1.Image, error) {
	rec, ok, err := assemble.LayersRecord(img)
	if err != nil || !ok {
		return img, err
	}
	return withLabel(img, label.Layers, rec)
}

// tailBuffer keeps the last lines written, for error messages.
type tailBuffer struct{ b bytes.Buffer }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b.Write(p)
	if t.b.Len() > 64<<10 {
		keep := t.b.Bytes()[t.b.Len()-16<<10:]
		t.b = *bytes.NewBuffer(append([]byte(nil), keep...))
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	lines := strings.Split(strings.TrimRight(t.b.String(), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Pinned is the request that rebuilds exactly this layer: the packages the
// user named at the versions they got, the rest constrained to theirs,
// from the wheels and .debs this install kept in the cache.
func (r Layer) Pinned(asked Request) Request {
	return Request{Apt: r.AptAsked, Pip: r.PipAsked, Constraints: r.Pip, FindLinks: asked.FindLinks, NoIndex: asked.NoIndex, Cached: r.Files, Cred: asked.Cred}
}

// withLabel sets one label of img's config.
func withLabel(img v1.Image, key, value string) (v1.Image, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	cfg.Config.Labels[key] = label.Escape(value)
	return mutate.ConfigFile(img, cfg)
}

// CheckRecorded checks packages read back from a record, which the user
// can write, as strictly as the same request on the command line: no
// pip options, Debian names only, cached files named by their digest.
func CheckRecorded(asked Request, installed *Layer) error {
	if asked.FindLinks != "" && !filepath.IsAbs(asked.FindLinks) {
		return fmt.Errorf("wheel directory %q is not an absolute path", asked.FindLinks)
	}
	if err := specsOK("--pip", append(append([]string{}, asked.Pip...), asked.Constraints...)); err != nil {
		return err
	}
	if err := aptOK(asked.Apt); err != nil {
		return err
	}
	files := asked.Cached
	if installed != nil {
		files = append(append([]CachedFile{}, files...), installed.Files...)
	}
	for _, f := range files {
		if err := f.valid(); err != nil {
			return err
		}
	}
	if in := installed; in != nil {
		if err := specsOK("installed pip package", append(append([]string{}, in.Pip...), in.PipAsked...)); err != nil {
			return err
		}
		if err := aptOK(append(append([]string{}, in.Apt...), in.AptAsked...)); err != nil {
			return err
		}
	}
	return nil
}
