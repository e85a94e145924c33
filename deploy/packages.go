package deploy

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
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/registry"
)

// Packages are what a user asks to have installed in an image.
type Packages struct {
	Apt []string `json:"apt,omitempty"` // name or name=version
	Pip []string `json:"pip,omitempty"` // requirement specifiers
	// Requirements is the text of --requirements files.
	Requirements string `json:"requirements,omitempty"`
	// Constraints pin versions without asking for the packages (pip -c):
	// how a rebuild gets exactly the dependencies it had.
	Constraints []string `json:"constraints,omitempty"`
	// FindLinks is a host directory of wheels pip may install from, beside
	// its index (mounted read-only; e.g. a site's own wheelhouse).
	FindLinks string `json:"find_links,omitempty"`
	// NoIndex installs pip packages only from FindLinks and ds01's cache.
	NoIndex bool `json:"no_index,omitempty"`
}

// Empty reports whether nothing is asked for.
func (p Packages) Empty() bool { return len(p.Apt) == 0 && len(p.Pip) == 0 && p.Requirements == "" }

var aptName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$`)

// Validate checks the request before anything runs.
func (p Packages) Validate() error {
	for _, a := range p.Apt {
		if !aptName.MatchString(a) {
			return fmt.Errorf("--apt %q is not a Debian package name (name or name=version)", a)
		}
	}
	for _, s := range p.Pip {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "\n\r") || strings.HasPrefix(strings.TrimSpace(s), "-") {
			return fmt.Errorf("--pip %q is not a requirement specifier (options belong in a --requirements file)", s)
		}
	}
	if p.FindLinks != "" {
		if fi, err := os.Stat(p.FindLinks); err != nil || !fi.IsDir() {
			return fmt.Errorf("wheel directory %s: not a directory on this host", p.FindLinks)
		}
	}
	return nil
}

// PackageOptions say how packages are installed.
type PackageOptions struct {
	Cache *registry.Cache
	// Offline installs only from the wheels and .debs in ds01's cache.
	Offline bool
	// Output gets the package managers' own output as it comes.
	Output io.Writer
}

// PackageResult is a package layer: made now or found in the cache.
type PackageResult struct {
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
	// Reused is set when the layer came from the cache, no install run.
	Reused bool `json:"-"`
	// Image is the base with the package layer, in the daemon: the base of
	// the user's image.
	Image string `json:"-"`
}

// key is the cache key of a request on a base.
func (p Packages) key(baseID string) string {
	apt, pip := slices.Clone(p.Apt), slices.Clone(p.Pip)
	slices.Sort(apt)
	slices.Sort(pip)
	b, _ := json.Marshal(struct {
		V                  int
		Base, Reqs, Wheels string
		Apt, Pip           []string
		Constraints        []string
		NoIndex            bool
	}{1, baseID, p.Requirements, wheelListing(p.FindLinks), apt, pip, p.Constraints, p.NoIndex})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// wheelListing names the wheels of a directory, so that a request with a
// changed wheelhouse is a different request.
func wheelListing(dir string) string {
	if dir == "" {
		return ""
	}
	ents, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d\n", e.Name(), fi.Size())
		}
	}
	return b.String()
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
	if underAny(notSaved)(p) || underAny(notPackaged)(p) {
		return true
	}
	return strings.HasSuffix(p, "-old") && (under(p, "/var/lib/dpkg") || under(p, "/var/cache/debconf"))
}

// installScript runs as root in the throwaway container: apt first, then
// pip into the base's own Python. Wheels and .debs are kept in ds01's
// cache (mounted), so an offline rebuild installs the same files.
const installScript = `set -eu
export DEBIAN_FRONTEND=noninteractive
before=$(mktemp)
dpkg-query -W -f '${Package}=${Version}\n' 2>/dev/null | sort > "$before" || true
if [ -s /ds01/in/apt.txt ]; then
  if [ -z "${DS01_OFFLINE:-}" ]; then apt-get update -q; fi
  apt-get install -y -q --no-install-recommends ${DS01_OFFLINE:+--no-download} $(cat /ds01/in/apt.txt)
fi
dpkg-query -W -f '${Package}=${Version}\n' 2>/dev/null | sort | comm -13 "$before" - > /ds01/out/apt.txt || true
if [ -s /ds01/in/requirements.txt ]; then
  py=$(command -v python3 || command -v python || true)
  if [ -z "$py" ]; then echo "ds01: the base has no python3 for pip packages" >&2; exit 3; fi
  links="--find-links /ds01/wheels"
  if [ -d /ds01/find-links ]; then links="$links --find-links /ds01/find-links"; fi
  if [ -z "${DS01_OFFLINE:-}" ]; then
    "$py" -m pip download -q ${DS01_NO_INDEX:+--no-index} -d /ds01/wheels $links -c /ds01/in/constraints.txt -r /ds01/in/requirements.txt
  fi
  "$py" -m pip install --no-index $links -c /ds01/in/constraints.txt --report /ds01/out/pip.json -r /ds01/in/requirements.txt
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
func (d *Daemon) PackageLayer(ctx context.Context, base *Base, pk Packages, o PackageOptions) (*PackageResult, error) {
	if err := pk.Validate(); err != nil {
		return nil, err
	}
	if o.Cache == nil {
		return nil, errors.New("packages need ds01's cache")
	}
	key := pk.key(base.ID)
	recPath := packagesDir(o.Cache, "req-"+key+".json")
	var res PackageResult
	if data, err := os.ReadFile(recPath); err == nil && json.Unmarshal(data, &res) == nil {
		if _, err := os.Stat(packagesDir(o.Cache, "layers", res.DiffID.Hex+".tar")); err == nil {
			res.Reused = true
		}
	}
	if !res.Reused {
		made, err := d.installPackages(ctx, base, pk, key, o)
		if err != nil {
			return nil, err
		}
		res = *made
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := registry.WriteFileAtomic(recPath, data); err != nil {
			return nil, err
		}
	}
	l := layers.FromFileDigest(packagesDir(o.Cache, "layers", res.DiffID.Hex+".tar"), res.DiffID, res.Size)
	res.Image = fmt.Sprintf("ds01-packages/%s:latest", key[:20])
	if ins, err := d.ImageInspect(ctx, res.Image); err == nil && len(ins.RootFS.Layers) > 0 && ins.RootFS.Layers[len(ins.RootFS.Layers)-1] == res.DiffID.String() {
		return &res, nil // base + packages already in the daemon
	}
	mt, err := base.Image.MediaType()
	if err != nil {
		return nil, err
	}
	cfg, err := base.Image.ConfigFile()
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base.Image, mutate.Addendum{Layer: layers.ForManifest(l, mt), History: v1.History{
		Created:   cfg.Created,
		CreatedBy: "ds01 packages: " + strings.Join(append(slices.Clone(res.Apt), res.Pip...), " "),
		Comment:   "installed in a throwaway container and captured from its changes, no docker build",
	}})
	if err != nil {
		return nil, err
	}
	if d.Store == Containerd {
		// The user layer goes on this image next: record the descriptors
		// the engine will hold its layers under, as assemble does.
		if img, err = withLayersRecord(img); err != nil {
			return nil, err
		}
	}
	omit := map[v1.Hash]bool{}
	for _, h := range base.layerIDs() {
		omit[h] = true
	}
	sg, _, err := d.stageLoad(ctx, img, res.Image, func(h v1.Hash) bool { return omit[h] }, nil)
	if err != nil {
		return nil, fmt.Errorf("loading the package layer onto the base: %w", err)
	}
	if err := sg.commit(res.Image); err != nil {
		return nil, err
	}
	return &res, nil
}

// withLayersRecord sets the ds01.layers label of img to its own layers.
func withLayersRecord(img v1.Image) (v1.Image, error) {
	rec, ok, err := assemble.LayersRecord(img)
	if err != nil || !ok {
		return img, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	cfg.Config.Labels[assemble.LabelLayers] = rec
	return mutate.ConfigFile(img, cfg)
}

func (d *Daemon) installPackages(ctx context.Context, base *Base, pk Packages, key string, o PackageOptions) (*PackageResult, error) {
	work, err := os.MkdirTemp("", "ds01-packages-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	for _, dir := range []string{in, out} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
	}
	reqs := strings.Join(pk.Pip, "\n") + "\n" + pk.Requirements
	if err := os.WriteFile(filepath.Join(in, "requirements.txt"), []byte(strings.TrimSpace(reqs)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(in, "apt.txt"), []byte(strings.Join(pk.Apt, "\n")), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(in, "constraints.txt"), []byte(strings.Join(pk.Constraints, "\n")), 0o644); err != nil {
		return nil, err
	}
	// The apt lists are kept per base, so that an offline rebuild can
	// resolve exactly the versions it installed.
	short := strings.TrimPrefix(base.ID, "sha256:")[:16]
	wheels, debs, lists := packagesDir(o.Cache, "wheels"), packagesDir(o.Cache, "debs"), packagesDir(o.Cache, "apt-lists", short)
	for _, dir := range []string{wheels, debs, filepath.Join(lists, "partial"), packagesDir(o.Cache, "layers")} {
		if err := os.MkdirAll(dir, 0o2775); err != nil {
			return nil, fmt.Errorf("cache %s: %w", dir, err)
		}
	}
	mounts := []mount.Mount{
		{Type: mount.TypeBind, Source: in, Target: "/ds01/in", ReadOnly: true},
		{Type: mount.TypeBind, Source: out, Target: "/ds01/out"},
		{Type: mount.TypeBind, Source: wheels, Target: "/ds01/wheels"},
		{Type: mount.TypeBind, Source: debs, Target: "/var/cache/apt/archives"},
		{Type: mount.TypeBind, Source: lists, Target: "/var/lib/apt/lists"},
	}
	if pk.FindLinks != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: pk.FindLinks, Target: "/ds01/find-links", ReadOnly: true})
	}
	cfg, err := base.Image.ConfigFile()
	if err != nil {
		return nil, err
	}
	epoch := strconv.FormatInt(cfg.Created.Unix(), 10)
	env := []string{"SOURCE_DATE_EPOCH=" + epoch, "PIP_NO_CACHE_DIR=1", "PIP_BREAK_SYSTEM_PACKAGES=1", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_ROOT_USER_ACTION=ignore", "PYTHONHASHSEED=0"}
	if o.Offline {
		env = append(env, "DS01_OFFLINE=1")
	}
	if pk.NoIndex {
		env = append(env, "DS01_NO_INDEX=1")
	}
	hc := &container.HostConfig{Mounts: mounts}
	if o.Offline {
		hc.NetworkMode = "none"
	}
	created, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image: base.ID, User: "0:0", Env: env,
			// Kept running, so that the changes are copied from a mounted
			// root, which is many times quicker than from a stopped one.
			Entrypoint: []string{"sh", "-c", "while :; do sleep 3600; done"},
			Labels:     map[string]string{"ds01.purpose": "install-packages"},
		},
		HostConfig: hc,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the install container: %w", err)
	}
	defer d.remove(created.ID)
	if _, err := d.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("starting the install container: %w", err)
	}
	var tail tailBuffer
	w := io.Writer(&tail)
	if o.Output != nil {
		w = io.MultiWriter(&tail, o.Output)
	}
	note := func(format string, a ...any) {
		if o.Output != nil {
			fmt.Fprintf(o.Output, "ds01: "+format+"\n", a...)
		}
	}
	t0 := time.Now()
	code, err := d.ExecTo(ctx, created.ID, "0:0", nil, w, w, "sh", "-c", installScript)
	if err != nil {
		return nil, fmt.Errorf("running the install: %w", err)
	}
	if code != 0 {
		return nil, fmt.Errorf("%w (exit %d); the last lines:\n%s", ErrInstall, code, tail.String())
	}

	res := &PackageResult{Key: key}
	if data, err := os.ReadFile(filepath.Join(out, "apt.txt")); err == nil {
		res.Apt = strings.Fields(string(data))
		for _, a := range res.Apt {
			name, _, _ := strings.Cut(a, "=")
			if slices.ContainsFunc(pk.Apt, func(r string) bool { n, _, _ := strings.Cut(r, "="); return n == name }) {
				res.AptAsked = append(res.AptAsked, a)
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(out, "pip.json")); err == nil {
		var rep struct {
			Install []struct {
				Requested bool                           `json:"requested"`
				Metadata  struct{ Name, Version string } `json:"metadata"`
			} `json:"install"`
		}
		if json.Unmarshal(data, &rep) == nil {
			for _, it := range rep.Install {
				pin := it.Metadata.Name + "==" + it.Metadata.Version
				res.Pip = append(res.Pip, pin)
				if it.Requested {
					res.PipAsked = append(res.PipAsked, pin)
				}
			}
			slices.Sort(res.Pip)
			slices.Sort(res.PipAsked)
		}
	}

	note("install: %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	spool, err := layers.NewSpool("")
	if err != nil {
		return nil, err
	}
	defer spool.Close()
	if _, err := d.CaptureChanges(ctx, created.ID, notInPackageLayer, spool); err != nil {
		return nil, fmt.Errorf("capturing the installed files: %w", err)
	}
	for _, p := range spool.Skipped() {
		note("warning: %s", layers.SkippedWarning(p))
	}
	note("captured %d paths, %d bytes of contents: %s", spool.Len(), spool.Size(), time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	defer func() { note("layer written: %s", time.Since(t0).Round(time.Millisecond)) }()
	tmp, err := os.CreateTemp(packagesDir(o.Cache, "layers"), ".tmp-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(tmp, h)}
	if err := spool.WriteTar(counter, cfg.Created.Time); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	res.DiffID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	res.Size = counter.n.Load()
	if err := os.Rename(tmp.Name(), packagesDir(o.Cache, "layers", res.DiffID.Hex+".tar")); err != nil {
		return nil, err
	}
	return res, nil
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
// user named at the versions they got, the rest constrained to theirs.
func (r PackageResult) Pinned(asked Packages) Packages {
	return Packages{Apt: r.AptAsked, Pip: r.PipAsked, Constraints: r.Pip, FindLinks: asked.FindLinks, NoIndex: asked.NoIndex}
}
