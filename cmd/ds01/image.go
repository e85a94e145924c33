package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/internal/limits"
	"github.com/ds01/ds01/internal/termsafe"
	"github.com/ds01/ds01/registry"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/urfave/cli/v3"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// openRecords opens where a user's image records live: $DS01_CONFIG/images,
// or ~/.ds01-config/images in the home of the user acted for, reached with
// that user's credentials.
func openRecords(id identity.Identity) (*pipeline.Records, error) {
	root, rel, err := recordsPlace(id)
	if err != nil {
		return nil, err
	}
	return pipeline.OpenRecords(id.Cred(), root, rel)
}

// recordsPlace is the directory the records are reached from and where
// they lie beneath it.
func recordsPlace(id identity.Identity) (root, rel string, err error) {
	if d := os.Getenv("DS01_CONFIG"); d != "" {
		if err := mkdirAs(id.Cred(), d); err != nil {
			return "", "", err
		}
		return d, "images", nil
	}
	home, err := homeOf(id)
	if err != nil {
		return "", "", fmt.Errorf("%w; set DS01_CONFIG to a directory for image records", err)
	}
	return home, filepath.Join(".ds01-config", "images"), nil
}

// mkdirAs makes dir, if missing, with cred's rights.
func mkdirAs(cred asuser.Cred, dir string) error {
	return cred.Do(func() error { return os.MkdirAll(dir, 0o755) })
}

// homeOf is the home directory of the user acted for, as the host's
// account database has it (never $HOME, which a sudo caller may set).
func homeOf(id identity.Identity) (string, error) {
	if u, err := user.LookupId(strconv.FormatUint(uint64(id.UID), 10)); err == nil && u.HomeDir != "" {
		return u.HomeDir, nil
	}
	if int(id.UID) == os.Getuid() {
		if h, err := os.UserHomeDir(); err == nil {
			return h, nil
		}
	}
	return "", fmt.Errorf("no home directory for UID %d on this host", id.UID)
}

// imageSetup is what every image command starts from.
func imageSetup(ctx context.Context, cmd *cli.Command) (identity.Identity, *deploy.Daemon, error) {
	id, err := caller(cmd)
	if err != nil {
		return id, nil, err
	}
	if err := id.CheckUser(); err != nil {
		return id, nil, usageError{err}
	}
	d, err := deploy.Connect(ctx)
	return id, d, err
}

// oneArg is the one argument a command takes, named what in the error.
func oneArg(cmd *cli.Command, what string) (string, error) {
	if cmd.NArg() != 1 {
		return "", usagef("%s takes one %s, got %d arguments", cmd.FullName(), what, cmd.NArg())
	}
	return cmd.Args().First(), nil
}

// legacyScope is whose committed images the legacy options see: root's
// own call sees everyone's, anyone else (or root acting for a user) only
// those tagged ._.{UID}.
func legacyScope(cmd *cli.Command, id identity.Identity) *uint32 {
	if !id.Root || cmd.IsSet("uid") || cmd.IsSet("user") {
		return &id.UID
	}
	return nil
}

func runImageCreate(ctx context.Context, cmd *cli.Command) error {
	project, err := oneArg(cmd, "PROJECT")
	if err != nil {
		return err
	}
	if _, _, err := label.ImageName(0, project); err != nil {
		return usageError{err}
	}
	if cmd.Bool("pull") && cmd.Bool("offline") {
		return usagef("--pull asks the registry and --offline forbids it: give one")
	}
	created, err := assemble.SourceDateEpoch(os.Getenv)
	if err != nil {
		return usageError{err}
	}
	pk, err := packagesFrom(cmd)
	if err != nil {
		return err
	}
	env, err := envFrom(cmd)
	if err != nil {
		return err
	}
	presetNames := cmd.StringSlice("preset")
	var baseRef string
	var catalog map[string]string
	if cmd.String("base") == "" && cmd.String("framework") == "" && isTerminal() && isTerminalWriter(cmd.Root().Writer) {
		// The DS01 wizard, on a terminal only.
		c, err := loadCatalog(cmd)
		if err != nil {
			return err
		}
		presets, err := loadPresets(cmd)
		if err != nil {
			return err
		}
		ch, err := wizard(bufio.NewReader(os.Stdin), cmd.Root().Writer, project, c, presets)
		if err != nil {
			return cli.Exit(err.Error(), exitFailure)
		}
		e := ch.Entry
		baseRef, catalog = e.Image, map[string]string{"framework": e.Framework, "version": e.Version, "arch": e.Arch, "image": e.Image}
		specs, _ := presets.Expand(ch.Presets)
		pk.Pip = append(append(pk.Pip, specs...), ch.Pip...)
		presetNames = append(presetNames, ch.Presets...)
	} else if baseRef, catalog, err = chooseBase(cmd); err != nil {
		return err
	}
	id, d, err := imageSetup(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	if !cmd.Bool("dry-run") {
		unlock, err := lockProject(ctx, cmd, id, project)
		if err != nil {
			return err
		}
		defer unlock()
	}
	return create(ctx, cmd, d, id, pipeline.CreateRequest{
		Project: project, BaseRef: baseRef, Catalog: catalog, Created: created,
		Replace: cmd.Bool("force"), DryRun: cmd.Bool("dry-run"),
		Resolve:  source.ResolveOptions{Offline: cmd.Bool("offline"), Refresh: cmd.Bool("pull")},
		Packages: pk, Env: env, Presets: presetNames,
	})
}

func loadCatalog(cmd *cli.Command) ([]registry.CatalogEntry, error) {
	return loadData(cmd, "catalog", registry.BuiltinCatalog, registry.ParseCatalog)
}

func loadPresets(cmd *cli.Command) (registry.Presets, error) {
	return loadData(cmd, "presets", registry.BuiltinPresets, registry.ParsePresets)
}

// loadData is an administrator's data file named by a flag, or the one
// built into ds01.
func loadData[T any](cmd *cli.Command, flag string, builtin func() T, parse func(string) (T, error)) (T, error) {
	p := cmd.String(flag)
	if p == "" {
		return builtin(), nil
	}
	var zero T
	data, err := userFile(cmd, flag, p)
	if err != nil {
		return zero, err
	}
	v, err := parse(string(data))
	if err != nil {
		return zero, usagef("--%s %s: %v", flag, p, err)
	}
	return v, nil
}

// userFile reads a file the caller names (--catalog, --presets,
// --requirements) with the caller's rights (a sudo caller's own, never
// root's): a
// regular file only, opened without blocking (a FIFO would hang), at most
// limits.UserFile bytes.
func userFile(cmd *cli.Command, flag, p string) ([]byte, error) {
	id, err := caller(cmd)
	if err != nil {
		return nil, err
	}
	data, err := asuser.ReadFile(id.CallerCred(), p, limits.UserFile.Max)
	if errors.Is(err, asuser.ErrTooLarge) {
		err = &limits.Error{Limit: limits.UserFile, Input: p, Got: -1}
	}
	if err != nil {
		return nil, usagef("--%s: %v", flag, err)
	}
	return data, nil
}

// packagesFrom reads the package flags.
func packagesFrom(cmd *cli.Command) (pipeline.Packages, error) {
	pk := pipeline.Packages{Apt: cmd.StringSlice("apt"), Pip: cmd.StringSlice("pip"), FindLinks: cmd.String("wheels"), NoIndex: cmd.Bool("no-index")}
	if names := cmd.StringSlice("preset"); len(names) > 0 {
		presets, err := loadPresets(cmd)
		if err != nil {
			return pk, err
		}
		specs, err := presets.Expand(names)
		if err != nil {
			return pk, usageError{err}
		}
		pk.Pip = append(specs, pk.Pip...)
	}
	for _, f := range cmd.StringSlice("requirements") {
		data, err := userFile(cmd, "requirements", f)
		if err != nil {
			return pk, err
		}
		pk.Requirements += string(data) + "\n"
	}
	if pk.FindLinks != "" {
		abs, err := filepath.Abs(pk.FindLinks)
		if err != nil {
			return pk, usageError{err}
		}
		pk.FindLinks = abs
	}
	if err := pk.Validate(); err != nil {
		return pk, usageError{err}
	}
	return pk, nil
}

func envFrom(cmd *cli.Command) ([]string, error) {
	env := cmd.StringSlice("env")
	if err := pipeline.ValidateEnv(env); err != nil {
		return nil, usageError{err}
	}
	return env, nil
}

// chooseBase is --base, or the catalog's image for --framework/--version.
func chooseBase(cmd *cli.Command) (string, map[string]string, error) {
	base, fw := cmd.String("base"), cmd.String("framework")
	switch {
	case base != "" && fw != "":
		return "", nil, usagef("give either --base REF or --framework NAME --version V, not both")
	case base != "":
		return base, nil, nil
	case fw == "":
		return "", nil, usagef("say which base to build on: --base REF (the Docker daemon, ds01's cache or a registry), or --framework pytorch --version 2.5.1 [--arch A] from the AIME catalog; packages with --preset, --pip, --requirements, --apt. On a terminal, ds01 asks instead")
	}
	c, err := loadCatalog(cmd)
	if err != nil {
		return "", nil, err
	}
	e, err := registry.Pick(c, fw, cmd.String("version"), cmd.String("arch"))
	if err != nil {
		return "", nil, usageError{err}
	}
	return e.Image, map[string]string{"framework": e.Framework, "version": e.Version, "arch": e.Arch, "image": e.Image}, nil
}

// fillBuild completes a build request with what every build of id shares:
// who it is for, the cache, where its record goes.
func fillBuild(cmd *cli.Command, id identity.Identity, req *pipeline.CreateRequest) error {
	recs, err := openRecords(id)
	if err != nil {
		return err
	}
	cacheDir, err := registry.CacheDir()
	if err != nil {
		return err
	}
	cache, err := registry.OpenCache(cacheDir)
	if err != nil {
		return err
	}
	req.Login, req.Account, req.Version, req.Cache = id.Login, id.Account(), versionString(), cache
	req.Records = recs
	req.OwnImagesOnly = !id.Root && id.ActsForUser()
	if req.Resolve.Pull.Keychain, err = keychainFor(id); err != nil {
		return err
	}
	req.Resolve.Cache = cache
	req.Packages.Cred = id.CallerCred()
	if cmd.Bool("verbose") {
		req.Log = cmd.Root().Writer
	}
	return nil
}

// create runs one build for id and reports it; image create and image
// update differ only in where the request comes from.
func create(ctx context.Context, cmd *cli.Command, d *deploy.Daemon, id identity.Identity, req pipeline.CreateRequest) error {
	out := cmd.Root().Writer
	if err := fillBuild(cmd, id, &req); err != nil {
		return err
	}
	var doneProgress func()
	req.Resolve.LoadProgress, doneProgress = loadProgress(out)
	var condensed *lastLine
	switch {
	case req.Log != nil:
		req.PackageOutput = &termsafe.Writer{W: out}
	case isTerminalWriter(out):
		condensed = &lastLine{w: out}
		req.PackageOutput = condensed
	}
	t := time.Now()
	res, err := d.Images.Create(ctx, req)
	doneProgress()
	if condensed != nil {
		condensed.end()
	}
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(cmd.Root().ErrWriter, "warning:", termsafe.Text(w))
	}
	if req.DryRun {
		if res.Base == nil {
			fmt.Fprintf(out, "%s  (dry run)\n  user %s (%s) %d:%d on %s\n  %s\n", res.Tag, id.Name, id.Login, id.UID, id.GID, req.BaseRef, res.Load)
			return nil
		}
		fmt.Fprintf(out, "%s  %s  (dry run: nothing loaded)\n  user %s (%s) %d:%d on %s (%s)\n  %s\n",
			res.Tag, res.ImageID, id.Name, id.Login, id.UID, id.GID, req.BaseRef, res.Base.ID, res.Load)
		return nil
	}
	fmt.Fprintf(out, "%s  %s\n  user %s (%s) %d:%d, base %s\n  user layer %d bytes; sent %d bytes to the daemon (%s); %s\n",
		res.Tag, res.ImageID, id.Name, id.Login, id.UID, id.GID, req.BaseRef, res.LayerSize, res.Sent, res.Load, since(t))
	if pr := res.Packages; pr != nil {
		how := "installed in a throwaway container in " + res.Timings["packages"].Round(time.Millisecond).String()
		if pr.Reused {
			how = "the shared layer reused, nothing installed"
		}
		fmt.Fprintf(out, "  packages: %d pip, %d apt (with dependencies); layer %s, %s; %s\n", len(pr.Pip), len(pr.Apt), pr.DiffID, humanSize(pr.Size), how)
	}
	if res.Replaced != "" && res.Replaced != res.ImageID {
		fmt.Fprintf(out, "  replaced %s\n", res.Replaced)
	}
	if req.Log != nil {
		for _, k := range []string{"resolve base", "packages", "read base files", "assemble", "load", "verify and record"} {
			fmt.Fprintf(out, "  %-17s %s\n", k, res.Timings[k].Round(100*time.Microsecond))
		}
	}
	return nil
}

func runImageUpdate(ctx context.Context, cmd *cli.Command) error {
	project, err := oneArg(cmd, "PROJECT")
	if err != nil {
		return err
	}
	if cmd.Bool("pull") && cmd.Bool("offline") {
		return usagef("--pull asks the registry and --offline forbids it: give one")
	}
	id, d, err := imageSetup(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	_, project, err = label.ImageName(id.UID, project)
	if err != nil {
		return usageError{err}
	}
	unlock, err := lockProject(ctx, cmd, id, project)
	if err != nil {
		return err
	}
	defer unlock()
	recs, err := openRecords(id)
	if err != nil {
		return err
	}
	defer recs.Close()
	rec, err := recs.Read(project)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no record of how %s was made in %s; make it with `ds01 image create %s --base REF`", project, recs.Dir(), project)
	} else if err != nil {
		return err
	}
	if rec.UID != id.UID || rec.GID != id.GID {
		return fmt.Errorf("image %s was made for UID/GID %d:%d, and you are %d:%d; rebuild it for you with `ds01 image create %s --base %s --force`",
			rec.Image, rec.UID, rec.GID, id.UID, id.GID, project, rec.Base.Ref)
	}
	if err := rec.Check(id.UID, id.GID); err != nil {
		return fmt.Errorf("%s: %w; the record is input like any flag, and this one would not be accepted from the command line: make the image again with `ds01 image create %s --force`", recs.Path(project), err, project)
	}
	if len(rec.Saved) > 0 && !cmd.Bool("discard-saved") {
		return fmt.Errorf("%s holds %d layer(s) saved by container retire --save, which a rebuild from its recorded inputs would drop; rebuild anyway with --discard-saved", rec.Image, len(rec.Saved))
	}
	req := pipeline.CreateRequest{Project: project, BaseRef: rec.Base.Ref, Catalog: rec.Catalog, Replace: true, Env: rec.Env, Presets: rec.Presets,
		Resolve: source.ResolveOptions{Offline: cmd.Bool("offline"), Refresh: cmd.Bool("pull")}}
	if rec.Packages != nil {
		req.Packages, req.Asked = *rec.Packages, rec.Packages
		if rec.Installed != nil && !cmd.Bool("upgrade-packages") {
			// Exactly what was installed, from the cached wheels and .debs
			// when offline.
			req.Packages = rec.Installed.Pinned(*rec.Packages)
		}
		if fl := req.Packages.FindLinks; fl != "" {
			// Checked with the caller's rights, as --wheels is: a record
			// naming a directory only root can read must not get it
			// mounted into the install container.
			real, err := asuser.UserDir(id.CallerCred(), fl, asuser.Read)
			switch {
			case errors.Is(err, os.ErrNotExist):
				// Gone since: what it gave is in ds01's cache.
				fmt.Fprintf(cmd.Root().ErrWriter, "warning: wheel directory %s is gone; installing from ds01's cache\n", fl)
				req.Packages.FindLinks = ""
			case err != nil:
				return fmt.Errorf("the record's wheel directory: %w; ds01 mounts only a directory you may read yourself", err)
			default:
				req.Packages.FindLinks = real
			}
		}
	}
	if rec.SourceDateEpoch != nil {
		req.Created = time.Unix(*rec.SourceDateEpoch, 0).UTC()
	}
	return create(ctx, cmd, d, id, req)
}

func runImageList(ctx context.Context, cmd *cli.Command) error {
	id, d, err := imageSetup(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	out := cmd.Root().Writer
	if cmd.Bool("legacy") {
		imgs, err := d.Images.LegacyImages(ctx, legacyScope(cmd, id))
		if err != nil {
			return err
		}
		if cmd.Bool("json") {
			return writeJSON(out, imgs)
		}
		var total int64
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "IMAGE\tID\tSIZE")
		for _, im := range imgs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", termsafe.Line(im.Tag), shortID(im.ID), humanSize(im.Size))
			total += im.Size
		}
		tw.Flush()
		fmt.Fprintf(out, "%d committed images of the old flow, %s (layers they share with other images are counted in each)\n", len(imgs), humanSize(total))
		return nil
	}
	imgs, err := d.Images.ListImages(ctx, id.UID, id.GID)
	if err != nil {
		return err
	}
	if cmd.Bool("json") {
		return writeJSON(out, imgs)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECT\tIMAGE\tBASE\tSIZE\tCREATED\tUSER SETUP")
	for _, im := range imgs {
		setup := "matches you"
		if !im.Matches {
			setup = fmt.Sprintf("for %s:%s", im.UserID, im.GroupID)
		}
		l := termsafe.Line // from records and labels, which users and bases write
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l(im.Project), l(im.Tag), l(im.Base), humanSize(im.Size), im.Created.Format("2006-01-02 15:04"), l(setup))
	}
	return tw.Flush()
}

func runImageRetire(ctx context.Context, cmd *cli.Command) error {
	if cmd.Bool("legacy") {
		return retireLegacy(ctx, cmd)
	}
	project, err := oneArg(cmd, "PROJECT")
	if err != nil {
		return err
	}
	id, d, err := imageSetup(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	tag, project, err := label.ImageName(id.UID, project)
	if err != nil {
		return usageError{err}
	}
	unlock, err := lockProject(ctx, cmd, id, project)
	if err != nil {
		return err
	}
	defer unlock()
	users, err := d.Images.ContainersOf(ctx, tag)
	if err != nil {
		return fmt.Errorf("%s: no such image of yours (ds01 image list shows them): %w", tag, err)
	}
	if len(users) > 0 && !cmd.Bool("force") {
		return fmt.Errorf("%s is used by container(s) %s; retire them first (ds01 container retire NAME), or remove the tag anyway with --force", tag, strings.Join(users, ", "))
	}
	if err := d.Images.RemoveTag(ctx, tag, cmd.Bool("force")); err != nil {
		return err
	}
	recs, err := openRecords(id)
	if err == nil {
		err = recs.Remove(project)
		recs.Close()
	}
	if err != nil {
		return fmt.Errorf("retired %s, but its record was not removed: %w", tag, err)
	}
	fmt.Fprintf(cmd.Root().Writer, "retired %s\n", tag)
	return nil
}

func retireLegacy(ctx context.Context, cmd *cli.Command) error {
	id, d, err := imageSetup(ctx, cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	imgs, err := d.Images.LegacyImages(ctx, legacyScope(cmd, id))
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	if len(imgs) == 0 {
		fmt.Fprintln(out, "no committed images of the old flow")
		return nil
	}
	for _, im := range imgs {
		fmt.Fprintf(out, "  %s  %s\n", im.Tag, humanSize(im.Size))
	}
	if !cmd.Bool("yes") {
		fmt.Fprintf(out, "remove these %d images? [y/N] ", len(imgs))
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.TrimSpace(strings.ToLower(line)); a != "y" && a != "yes" {
			return cli.Exit("nothing removed", exitFailure)
		}
	}
	var failed []string
	for _, im := range imgs {
		if err := d.Images.RemoveTag(ctx, im.Tag, false); err != nil {
			failed = append(failed, err.Error())
			continue
		}
		fmt.Fprintf(out, "removed %s\n", im.Tag)
	}
	if len(failed) > 0 {
		return fmt.Errorf("some images were kept (a container still uses them?):\n  %s", strings.Join(failed, "\n  "))
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// lastLine shows, on a terminal, only the latest line of a package
// manager's output, overwriting the one before: escaped (the base's
// programs write it), and a line without end is cut at
// limits.OutputLine bytes rather than buffered without bound.
type lastLine struct {
	w       io.Writer
	partial []byte
	shown   bool
}

func (l *lastLine) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			room := max(0, int(limits.OutputLine.Max)-len(l.partial))
			l.partial = append(l.partial, p[:min(room, len(p))]...)
			break
		}
		room := max(0, int(limits.OutputLine.Max)-len(l.partial))
		l.partial = append(l.partial, p[:min(room, i)]...)
		p = p[i+1:]
		l.show()
	}
	return n, nil
}

func (l *lastLine) show() {
	line := strings.TrimSpace(string(l.partial))
	l.partial = l.partial[:0]
	if line == "" {
		return
	}
	if r := []rune(line); len(r) > 100 {
		line = string(r[:97]) + "..."
	}
	fmt.Fprintf(l.w, "\r\033[K  %s", termsafe.Line(line))
	l.shown = true
}

func (l *lastLine) end() {
	if l.shown {
		fmt.Fprint(l.w, "\r\033[K")
	}
}

// keychainFor is whose registry credentials a pull for id uses: through
// sudo the user's own (root's would let any user pull what root may),
// else the process's (nil: the docker CLI's).
func keychainFor(id identity.Identity) (authn.Keychain, error) {
	if id.Root || !id.ActsForUser() {
		return nil, nil
	}
	home, err := homeOf(id)
	if err != nil {
		return registry.UserKeychain(id.Cred(), "/nonexistent")
	}
	return registry.UserKeychain(id.Cred(), home)
}
