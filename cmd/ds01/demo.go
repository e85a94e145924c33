package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/registry"
)

// demoLogin is whom the demo acts for when root runs it without --user:
// an LDAP login with a UID of the size that breaks useradd-based setups.
const (
	demoLogin = "h.baker@hertie-school.lan"
	demoID    = 1722830498
)

func demoCmd() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "make a Debian base locally, assemble your image on it, and show it working inside a container",
		Description: "Needs only a Docker daemon and Debian's packages (mmdebstrap): no image registry.\n" +
			"Run as root without --user, it acts for h.baker@hertie-school.lan, UID/GID 1722830498, or the\n" +
			"next UID above it that no account or group of this host has (DS01_DEMO_UID moves the start).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "suite", Value: "bookworm", Usage: "Debian release of the base: bookworm (with Python) or bullseye"},
			&cli.StringFlag{Name: "project", Value: "demo", Usage: "the image is ds01-{UID}/`PROJECT`:latest"},
		},
		Action: runDemo,
	}
}

func runDemo(ctx context.Context, cmd *cli.Command) error {
	out := cmd.Root().Writer
	id, err := caller(cmd)
	if err != nil {
		return err
	}
	if id.Sudo {
		// It builds a Debian base as root and replaces the demo project's
		// image: nothing a sudo rule for users should give.
		return usagef("ds01 demo is for root or a user with Docker itself, not through sudo; try it with `ds01 image create` on a base instead")
	}
	forDemo := id.UID == 0 && !cmd.IsSet("user")
	if forDemo {
		if id, err = demoIdentity(out, idTaken); err != nil {
			return err
		}
	}
	if err := id.CheckUser(); err != nil {
		return usageError{err}
	}
	var base registry.Debian
	switch cmd.String("suite") {
	case "bookworm":
		base = registry.Bookworm
	case "bullseye":
		base = registry.Bullseye
	default:
		return usagef("--suite %q: choose bookworm or bullseye", cmd.String("suite"))
	}
	tag := label.Tag(id.UID, cmd.String("project"))

	d, err := deploy.Connect(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	fmt.Fprintf(out, "docker: API %s, %s store (%s)\n", d.APIVersion, d.Store, d.Driver)
	if forDemo {
		if err := demoOwnsImage(ctx, d, tag); err != nil {
			return err
		}
	}

	cache, err := registry.CacheDir()
	if err != nil {
		return err
	}
	baseTag, err := demoBase(ctx, out, d, base, cache)
	if err != nil {
		return err
	}

	created, err := assemble.SourceDateEpoch(os.Getenv)
	if err != nil {
		return usageError{err}
	}
	o, err := newOps(d)
	if err != nil {
		return err
	}
	if _, err := ops.HomeOf(id); err != nil && o.ConfigDir == "" {
		// The demo user is not on this host: keep its record in the cache.
		o.ConfigDir = filepath.Join(cache, "demo-config")
	}
	t := time.Now()
	res, err := o.CreateImage(ctx, id, ops.ImageCreate{Project: cmd.String("project"), BaseRef: baseTag, Created: created, Force: true}, events(cmd))
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(out, "warning:", w)
	}
	fmt.Fprintf(out, "image create: %s %s for %s (%s, %d:%d): user layer %d bytes, %d bytes sent to the daemon (%s): %s\n",
		tag, res.ImageID, id.Name, id.Login, id.UID, id.GID, res.LayerSize, res.Sent, res.Load, since(t))

	script := `id; echo "HOME=$HOME"; echo "PATH=$PATH"; sudo -n true && echo "sudo: ok"; stat -c '%n %s bytes' /var/log/lastlog /var/log/faillog; pwd`
	if base.Suite == "bookworm" {
		script += "; python3 -c 'import getpass, os; print(\"python sees\", getpass.getuser(), os.getuid())'"
	}
	fmt.Fprintf(out, "inside a container of %s, in a login shell:\n", tag)
	r, err := d.Run(ctx, tag, "", "bash", "-lc", script)
	if err != nil {
		return err
	}
	indent(out, r.Stdout)
	indent(out, r.Stderr)
	if r.ExitCode != 0 {
		return fmt.Errorf("the demo commands exited %d inside the container", r.ExitCode)
	}
	fmt.Fprintf(out, "done: docker run --rm -it %s   (remove it with: docker rmi %s)\n", tag, tag)
	return nil
}

// demoBase builds the Debian base with mmdebstrap (cached) and puts it
// into the daemon once, like any base ds01 streams in: every build after
// that sends only the user layer.
func demoBase(ctx context.Context, out io.Writer, d *deploy.Daemon, base registry.Debian, cache string) (string, error) {
	t := time.Now()
	img, err := base.Image(ctx, filepath.Join(cache, "debian"))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "base: Debian %s minbase (+%s), from mmdebstrap via %s: %s\n", base.Suite, strings.Join(base.Packages, ","), filepath.Join(cache, "debian"), since(t))
	baseTag := fmt.Sprintf("ds01-base/debian-%s:%s", base.Suite, registry.DebianCreated.Format("20060102"))
	want, err := img.ConfigName()
	if err != nil {
		return "", err
	}
	if ins, err := d.ImageInspect(ctx, baseTag); err != nil || ins.ID != want.String() {
		t = time.Now()
		st, err := d.Load(ctx, img, baseTag, nil)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(out, "base loaded into Docker once as %s: %d MB in %s\n", baseTag, st.Sent>>20, since(t))
	}
	return baseTag, nil
}

func indent(w io.Writer, s string) {
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if l != "" {
			fmt.Fprintln(w, "    "+l)
		}
	}
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// demoIdentity is whom the demo acts for as root: demoLogin with UID and
// GID demoID, or the first ID above it that no account or group here has.
// On a server where demoID is a real user, the demo would otherwise make
// and replace that user's images.
func demoIdentity(out io.Writer, taken func(uint32) bool) (identity.Identity, error) {
	start := uint32(demoID)
	if v := os.Getenv("DS01_DEMO_UID"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return identity.Identity{}, usagef("DS01_DEMO_UID=%q: give a UID above 0", v)
		}
		start = uint32(n)
	}
	uid := start
	for taken(uid) {
		if uid++; uid-start > 1000 || uid == 0 {
			return identity.Identity{}, fmt.Errorf("the demo acts for a UID no account or group of this host has, and %d to %d are all taken; run it with --user LOGIN", start, uid-1)
		}
	}
	id, err := identity.Resolve(identity.Process{Login: "root"}, identity.Overrides{Login: demoLogin, UID: &uid, GID: &uid}, identity.Host)
	if err != nil {
		return id, err
	}
	why := ""
	if uid != start {
		why = fmt.Sprintf("; %d belongs to an account or group of this host", start)
	}
	fmt.Fprintf(out, "running as root: acting for %s (UID/GID %d%s); --user LOGIN picks another\n", demoLogin, uid, why)
	return id, nil
}

// idTaken reports whether an account or a group of the host (NSS, so LDAP
// too) has the ID; a lookup that fails for another reason counts as taken.
func idTaken(id uint32) bool {
	s := strconv.FormatUint(uint64(id), 10)
	_, err := user.LookupId(s)
	var nu user.UnknownUserIdError
	if !errors.As(err, &nu) {
		return true
	}
	_, err = user.LookupGroupId(s)
	var ng user.UnknownGroupIdError
	return !errors.As(err, &ng)
}

// demoOwnsImage refuses to replace an image at tag that the demo did not
// make (its login label names someone else).
func demoOwnsImage(ctx context.Context, d *deploy.Daemon, tag string) error {
	ins, err := d.ImageInspect(ctx, tag)
	if err != nil {
		return nil
	}
	if l := ins.Config.Labels[label.Login]; l != demoLogin {
		return fmt.Errorf("%s exists and was made for %q, not by the demo: nothing was changed; run the demo with --project NAME or --user LOGIN", tag, l)
	}
	return nil
}
