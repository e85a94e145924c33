package packages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/registry"
)

func (d *Installer) installPackages(ctx context.Context, base *source.Base, pk Request, key string, run *installRun, o Options) (*Layer, error) {
	note := func(format string, a ...any) {
		if o.Output != nil {
			fmt.Fprintf(o.Output, "ds01: "+format+"\n", a...)
		}
	}
	linked, missing := run.linkCached(o.Cache, pk.Cached)
	if len(missing) > 0 {
		if o.Offline {
			return nil, fmt.Errorf("--offline: %d package file(s) this request used are not in ds01's cache as recorded (%s); build once without --offline", len(missing), strings.Join(quoteAll(missing), ", "))
		}
		note("%d package file(s) not in the cache as recorded; downloading them", len(missing))
	}
	if err := writeInputs(run, pk); err != nil {
		return nil, err
	}
	cfg, err := base.Image.ConfigFile()
	if err != nil {
		return nil, err
	}
	id, err := d.startInstall(ctx, base, pk, run, cfg, o)
	if err != nil {
		return nil, err
	}
	defer d.RemoveContainer(id)
	if len(pk.Apt) > 0 && o.Offline {
		if err := d.aptListsIn(ctx, id, base, o.Cache); err != nil {
			return nil, err
		}
	}
	var tail tailBuffer
	w := io.Writer(&tail)
	if o.Output != nil {
		w = io.MultiWriter(&tail, o.Output)
	}
	t0 := time.Now()
	code, err := d.ExecTo(ctx, id, "0:0", nil, w, w, "sh", "-c", installScript)
	if err != nil {
		return nil, fmt.Errorf("running the install: %w", err)
	}
	if code != 0 {
		return nil, fmt.Errorf("%w (exit %d); the last lines:\n%s", ErrInstall, code, tail.String())
	}
	res, err := d.installResults(ctx, id, pk, o, note)
	if err != nil {
		return nil, err
	}
	res.Key, res.Files = key, mergeFiles(linked, res.Files)
	if len(pk.Apt) > 0 && !o.Offline {
		if err := d.aptListsOut(ctx, id, base, o.Cache); err != nil {
			return nil, err
		}
	}
	note("install: %s", time.Since(t0).Round(time.Millisecond))
	if err := d.writeLayer(ctx, id, cfg.Created.Time, res, o.Cache, note); err != nil {
		return nil, err
	}
	return res, nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// mergeFiles is a and b without repeats, sorted by name.
func mergeFiles(a, b []CachedFile) []CachedFile {
	out := slices.Concat(a, b)
	slices.SortFunc(out, func(x, y CachedFile) int { return strings.Compare(x.Name+x.SHA256, y.Name+y.SHA256) })
	return slices.Compact(out)
}

// writeInputs writes the request into the run's in/ (mounted read-only).
func writeInputs(run *installRun, pk Request) error {
	reqs := strings.Join(pk.Pip, "\n") + "\n" + pk.Requirements
	for name, text := range map[string]string{
		"requirements.txt": strings.TrimSpace(reqs),
		"apt.txt":          strings.Join(pk.Apt, "\n"),
		"constraints.txt":  strings.Join(pk.Constraints, "\n"),
	} {
		if err := os.WriteFile(run.in(name), []byte(text), 0o444); err != nil {
			return err
		}
	}
	return nil
}

// startInstall creates and starts the install container: the base, as
// root, with nothing of the host but the run's in/, read-only.
func (d *Installer) startInstall(ctx context.Context, base *source.Base, pk Request, run *installRun, cfg *v1.ConfigFile, o Options) (string, error) {
	epoch := strconv.FormatInt(cfg.Created.Unix(), 10)
	env := []string{"SOURCE_DATE_EPOCH=" + epoch, "PIP_NO_CACHE_DIR=1", "PIP_BREAK_SYSTEM_PACKAGES=1", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_ROOT_USER_ACTION=ignore", "PYTHONHASHSEED=0"}
	if o.Offline {
		env = append(env, "DS01_OFFLINE=1")
	}
	if pk.NoIndex {
		env = append(env, "DS01_NO_INDEX=1")
	}
	hc := &container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: run.in(), Target: "/ds01/in", ReadOnly: true}}}
	if o.Offline {
		hc.NetworkMode = "none"
	}
	created, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image: base.ID, User: "0:0", Env: env,
			// Kept running, so that the changes are copied from a mounted
			// root, which is many times quicker than from a stopped one.
			Entrypoint: []string{"sh", "-c", "while :; do sleep 3600; done"},
			Labels:     map[string]string{label.Purpose: "install-packages", label.For: o.For},
		},
		HostConfig: hc,
	})
	if err != nil {
		return "", fmt.Errorf("creating the install container: %w", err)
	}
	if _, err := d.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		d.RemoveContainer(created.ID)
		return "", fmt.Errorf("starting the install container: %w", err)
	}
	return created.ID, nil
}

// errOutput is a result the base replaced or left out.
func errOutput(name string) error {
	return fmt.Errorf("the install left no regular /ds01/out/%s (the base replaced ds01's own output: ds01 takes back only regular files from a base it runs); nothing was made", name)
}

// installResults copies the install's /ds01/out out of the container
// through the Docker API: the reports (regular files, capped) and the
// wheels and .debs, which go into the cache by digest.
func (d *Installer) installResults(ctx context.Context, id string, pk Request, o Options, note func(string, ...any)) (*Layer, error) {
	arc, err := d.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: "/ds01/out"})
	if err != nil {
		return nil, fmt.Errorf("copying the install's results: %w", err)
	}
	defer arc.Content.Close()
	out, err := readInstallOutput(arc.Content, func(r io.Reader) (string, int64, error) { return o.Cache.PutContent(r, maxPackageFile) })
	if err != nil {
		return nil, err
	}
	if len(out.Skipped) > 0 {
		note("left out %d entries of the install's results that are not regular wheels or .debs: %s", len(out.Skipped), strings.Join(quoteAll(out.Skipped[:min(5, len(out.Skipped))]), ", "))
	}
	if !out.HasApt {
		return nil, errOutput("apt.txt")
	}
	res := &Layer{Files: out.Files}
	if res.Apt, err = parseAptList(out.Apt); err != nil {
		return nil, err
	}
	for _, a := range res.Apt {
		name, _, _ := strings.Cut(a, "=")
		if slices.ContainsFunc(pk.Apt, func(r string) bool { n, _, _ := strings.Cut(r, "="); return n == name }) {
			res.AptAsked = append(res.AptAsked, a)
		}
	}
	if strings.TrimSpace(strings.Join(pk.Pip, "")+pk.Requirements) != "" {
		if out.Pip == nil {
			return nil, errOutput("pip.json")
		}
		if res.Pip, res.PipAsked, err = parsePipReport(out.Pip); err != nil {
			return nil, err
		}
	}
	return res, nil
}

var (
	aptPin  = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]*=[A-Za-z0-9.+~:-]+$`)
	pipName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
	pipVer  = regexp.MustCompile(`^[A-Za-z0-9.+!_-]+$`)
	errPins = fmt.Errorf("the install reported more than %d packages, more than ds01 records", maxPins)
)

// maxPins bounds the packages one install reports (labels carry them all).
const maxPins = 20000

func errPin(pin string) error {
	return fmt.Errorf("the install reported a package %q that is not a package name and version (the base's own apt or pip said so; ds01 puts only names and versions into labels); nothing was made", pin)
}

// parseAptList reads apt.txt: name=version lines, as labels carry them.
func parseAptList(data []byte) ([]string, error) {
	var out []string
	for _, f := range strings.Fields(string(data)) {
		if !aptPin.MatchString(f) {
			return nil, errPin(f)
		}
		if len(out) == maxPins {
			return nil, errPins
		}
		out = append(out, f)
	}
	return out, nil
}

// parsePipReport reads pip's installation report: name==version pins.
func parsePipReport(data []byte) (pins, asked []string, err error) {
	var rep struct {
		Install []struct {
			Requested bool                           `json:"requested"`
			Metadata  struct{ Name, Version string } `json:"metadata"`
		} `json:"install"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, nil, fmt.Errorf("reading pip's report: %w", err)
	}
	if len(rep.Install) > maxPins {
		return nil, nil, errPins
	}
	for _, it := range rep.Install {
		pin := it.Metadata.Name + "==" + it.Metadata.Version
		if !pipName.MatchString(it.Metadata.Name) || !pipVer.MatchString(it.Metadata.Version) {
			return nil, nil, errPin(pin)
		}
		pins = append(pins, pin)
		if it.Requested {
			asked = append(asked, pin)
		}
	}
	slices.Sort(pins)
	slices.Sort(asked)
	return pins, asked, nil
}

// aptListsIn gives an offline install the apt lists kept for its base.
func (d *Installer) aptListsIn(ctx context.Context, id string, base *source.Base, c *registry.Cache) error {
	lists, err := cachedAptLists(c, base.ID)
	if err != nil {
		return fmt.Errorf("--offline: no apt lists of this base in ds01's cache as recorded (%v); build once without --offline", err)
	}
	defer lists.Close()
	if _, err := d.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/var/lib/apt", Content: lists}); err != nil {
		return fmt.Errorf("giving the install the cached apt lists: %w", err)
	}
	return nil
}

// aptListsOut keeps the apt lists the install fetched, for offline rebuilds.
func (d *Installer) aptListsOut(ctx context.Context, id string, base *source.Base, c *registry.Cache) error {
	arc, err := d.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: "/var/lib/apt/lists"})
	if err != nil {
		return fmt.Errorf("copying the apt lists: %w", err)
	}
	defer arc.Content.Close()
	if err := putAptLists(c, base.ID, arc.Content); err != nil {
		return fmt.Errorf("keeping the apt lists: %w", err)
	}
	return nil
}

// writeLayer captures the container's changes into the package layer,
// kept in the cache under its diff ID.
func (d *Installer) writeLayer(ctx context.Context, id string, created time.Time, res *Layer, c *registry.Cache, note func(string, ...any)) error {
	t0 := time.Now()
	spool, err := layers.NewSpool("")
	if err != nil {
		return err
	}
	defer spool.Close()
	if _, err := d.CaptureChanges(ctx, id, notInPackageLayer, spool); err != nil {
		return fmt.Errorf("capturing the installed files: %w", err)
	}
	for _, p := range spool.Skipped() {
		note("warning: %s", layers.SkippedWarning(p))
	}
	note("captured %d paths, %d bytes of contents: %s", spool.Len(), spool.Size(), time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	defer func() { note("layer written: %s", time.Since(t0).Round(time.Millisecond)) }()
	dir := packagesDir(c, "layers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache %s: %w", dir, err)
	}
	tmp, err := registry.CreateAtomic(filepath.Join(dir, "layer.tar"), 0o644)
	if err != nil {
		return err
	}
	h := sha256.New()
	var size int64
	counter := writerFunc(func(p []byte) (int, error) { size += int64(len(p)); return len(p), nil })
	if err := spool.WriteTar(io.MultiWriter(tmp, h, counter), created); err != nil {
		tmp.Abort()
		return err
	}
	res.DiffID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	res.Size = size
	return tmp.CommitAs(res.DiffID.Hex + ".tar")
}

// writerFunc is a function as an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
