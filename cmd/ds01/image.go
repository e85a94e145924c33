package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/internal/limits"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/termsafe"
	"github.com/ds01/ds01/registry"
)

// newOps are the operations on d with this process's settings.
func newOps(d *deploy.Daemon) (*ops.Ops, error) {
	cacheDir, err := registry.CacheDir()
	if err != nil {
		return nil, err
	}
	return &ops.Ops{D: d, Version: versionString(), ConfigDir: os.Getenv("DS01_CONFIG"), CacheDir: cacheDir}, nil
}

// events are where an operation's progress goes on this terminal.
func events(cmd *cli.Command) ops.Events {
	ev := ops.Events{
		Waiting: func(project string) {
			fmt.Fprintf(cmd.Root().ErrWriter, "waiting for another ds01 working on project %s…\n", project)
		},
		Warn: func(w string) { fmt.Fprintln(cmd.Root().ErrWriter, "warning:", termsafe.Text(w)) },
	}
	if cmd.Bool("verbose") {
		ev.Log = cmd.Root().Writer
	}
	return ev
}

// oneArg is the one argument a command takes, named what in the error.
func oneArg(cmd *cli.Command, what string) (string, error) {
	if cmd.NArg() != 1 {
		return "", usagef("%s takes one %s, got %d arguments", cmd.FullName(), what, cmd.NArg())
	}
	return cmd.Args().First(), nil
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
		return usageError{ops.ErrPullOffline}
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
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	r := ops.ImageCreate{
		Project: project, BaseRef: baseRef, Catalog: catalog, Created: created,
		Force: cmd.Bool("force"), DryRun: cmd.Bool("dry-run"), Offline: cmd.Bool("offline"), Pull: cmd.Bool("pull"),
		Packages: pk, Env: env, Presets: presetNames,
	}
	return build(cmd, id, baseRef, r.DryRun, func(ev ops.Events) (*pipeline.CreateResult, error) { return o.CreateImage(ctx, id, r, ev) })
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
func packagesFrom(cmd *cli.Command) (packages.Request, error) {
	pk := packages.Request{Apt: cmd.StringSlice("apt"), Pip: cmd.StringSlice("pip"), FindLinks: cmd.String("wheels"), NoIndex: cmd.Bool("no-index")}
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
	if err := record.ValidateEnv(env); err != nil {
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

// build runs one build for id and reports it; image create and image
// update differ only in where the request comes from.
func build(cmd *cli.Command, id identity.Identity, baseRef string, dryRun bool, run func(ops.Events) (*pipeline.CreateResult, error)) error {
	out := cmd.Root().Writer
	ev := events(cmd)
	var doneProgress func()
	ev.LoadProgress, doneProgress = loadProgress(out)
	var condensed *lastLine
	switch {
	case ev.Log != nil:
		ev.PackageOutput = &termsafe.Writer{W: out}
	case isTerminalWriter(out):
		condensed = &lastLine{w: out}
		ev.PackageOutput = condensed
	}
	t := time.Now()
	res, err := run(ev)
	doneProgress()
	if condensed != nil {
		condensed.end()
	}
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		ev.Warn(w)
	}
	if res.Base != nil {
		baseRef = res.Base.Ref // image update's, from the record
	}
	if dryRun {
		if res.Base == nil {
			fmt.Fprintf(out, "%s  (dry run)\n  user %s (%s) %d:%d on %s\n  %s\n", res.Tag, id.Name, id.Login, id.UID, id.GID, baseRef, res.Load)
			return nil
		}
		fmt.Fprintf(out, "%s  %s  (dry run: nothing loaded)\n  user %s (%s) %d:%d on %s (%s)\n  %s\n",
			res.Tag, res.ImageID, id.Name, id.Login, id.UID, id.GID, baseRef, res.Base.ID, res.Load)
		return nil
	}
	fmt.Fprintf(out, "%s  %s\n  user %s (%s) %d:%d, base %s\n  user layer %d bytes; sent %d bytes to the daemon (%s); %s\n",
		res.Tag, res.ImageID, id.Name, id.Login, id.UID, id.GID, baseRef, res.LayerSize, res.Sent, res.Load, since(t))
	reportBuild(out, res, ev.Log != nil)
	return nil
}

// reportBuild ends a build's report: packages, what was replaced, and
// with -v the time of each step.
func reportBuild(out io.Writer, res *pipeline.CreateResult, verbose bool) {
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
	if verbose {
		for _, k := range []string{"resolve base", "packages", "read base files", "assemble", "load", "verify and record"} {
			fmt.Fprintf(out, "  %-17s %s\n", k, res.Timings[k].Round(100*time.Microsecond))
		}
	}
}

func runImageUpdate(ctx context.Context, cmd *cli.Command) error {
	project, err := oneArg(cmd, "PROJECT")
	if err != nil {
		return err
	}
	if cmd.Bool("pull") && cmd.Bool("offline") {
		return usageError{ops.ErrPullOffline}
	}
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	if _, _, err := label.ImageName(id.UID, project); err != nil {
		return usageError{err}
	}
	r := ops.ImageUpdate{Project: project, Offline: cmd.Bool("offline"), Pull: cmd.Bool("pull"),
		DiscardSaved: cmd.Bool("discard-saved"), UpgradePackages: cmd.Bool("upgrade-packages")}
	return build(cmd, id, "", false, func(ev ops.Events) (*pipeline.CreateResult, error) { return o.UpdateImage(ctx, id, r, ev) })
}

func runImageList(ctx context.Context, cmd *cli.Command) error {
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	out := cmd.Root().Writer
	if cmd.Bool("legacy") {
		imgs, err := o.LegacyImages(ctx, id)
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
	imgs, err := o.ListImages(ctx, id)
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
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	if _, _, err := label.ImageName(id.UID, project); err != nil {
		return usageError{err}
	}
	tag, err := o.RetireImage(ctx, id, project, cmd.Bool("force"), events(cmd))
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.Root().Writer, "retired %s\n", tag)
	return nil
}

func retireLegacy(ctx context.Context, cmd *cli.Command) error {
	id, o, done, err := setup(ctx, cmd)
	if err != nil {
		return err
	}
	defer done()
	imgs, err := o.LegacyImages(ctx, id)
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
	tags := make([]string, len(imgs))
	for i, im := range imgs {
		tags[i] = im.Tag
	}
	removed, err := o.RetireLegacy(ctx, id, tags)
	for _, tag := range removed {
		fmt.Fprintf(out, "removed %s\n", tag)
	}
	return err
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
