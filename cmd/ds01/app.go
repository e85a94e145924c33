package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"runtime/debug"
	"strconv"

	"github.com/urfave/cli/v3"

	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/passwd"
)

// version is set at link time (-ldflags "-X main.version=…"); otherwise it
// comes from the module's build information.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

// grouped lists the commands under image, container and base, each with
// the constructor of its *cli.Command.
var grouped = []struct {
	group, name string
	ctor        func() *cli.Command
}{
	{"image", "create", imageCreate}, {"image", "update", imageUpdate}, {"image", "list", imageList}, {"image", "retire", imageRetire}, {"image", "prune", imagePrune}, {"image", "push", imagePush}, {"image", "pull", imagePull},
	{"container", "deploy", containerDeploy}, {"container", "list", containerList}, {"container", "retire", containerRetire}, {"container", "open", containerOpen},
	{"base", "pull", basePull}, {"base", "list", baseList}, {"base", "prune", basePrune},
	{"gpu", "list", gpuList}, {"gpu", "status", gpuStatus},
}

// dashNames are the DS01 script names (image-create, container-deploy, …):
// each is also a hidden top-level command and a name the binary answers
// to through a symlink.
var dashNames = func() map[string]func() *cli.Command {
	m := map[string]func() *cli.Command{}
	for _, g := range grouped {
		m[g.group+"-"+g.name] = g.ctor
	}
	return m
}()

func group(name string) []*cli.Command {
	var out []*cli.Command
	for _, g := range grouped {
		if g.group == name {
			out = append(out, g.ctor())
		}
	}
	return out
}

func newApp() *cli.Command {
	groups := []*cli.Command{
		{
			Name:     "image",
			Usage:    "make and manage your images (ds01-{UID}/{project}:latest)",
			Commands: group("image"),
		},
		{
			Name:     "container",
			Usage:    "make and manage your containers",
			Commands: group("container"),
		},
		{
			Name:     "base",
			Usage:    "base images in ds01's cache",
			Commands: group("base"),
		},
		{Name: "gpu", Usage: "the server's GPUs and who holds them", Commands: group("gpu")},
	}
	cmds := append([]*cli.Command{}, groups...)
	cmds = append(cmds, usernameCmd(), versionCmd(), demoCmd(), serveCmd(), dashNamesCmd())
	// The DS01 names: image-create, container-deploy, …, as hidden
	// top-level commands built afresh (a *cli.Command holds parse state and
	// cannot sit in two places).
	for _, g := range grouped {
		c := g.ctor()
		c.Name, c.Hidden = g.group+"-"+g.name, true
		cmds = append(cmds, c)
	}
	root := &cli.Command{
		Name:  "ds01",
		Usage: "per-user images with the user baked in, assembled in well under a second, and containers from them",
		Description: "Every command acts for the calling user; through sudo, for SUDO_USER with that user's rights alone.\n" +
			"Root itself may act for another user with --user LOGIN [--uid N --gid N].\n" +
			"The DS01 script names work too: ds01 image-create …, or a symlink named image-create.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "user", Usage: "act for this login (root itself only, not through sudo); the image user is its sanitized name", Sources: cli.EnvVars("DS01_USER")},
			&cli.Uint32Flag{Name: "uid", Usage: "with --user: the UID to use instead of the host's (root only)"},
			&cli.Uint32Flag{Name: "gid", Usage: "with --user: the GID to use instead of the host's (root only)"},
			&cli.BoolFlag{Name: "direct", Usage: "talk to the Docker daemon directly, not through the ds01 service (needs the Docker socket)"},
		},
		Commands:        cmds,
		HideHelpCommand: true,
		ExitErrHandler:  func(context.Context, *cli.Command, error) {}, // main prints and exits
	}
	// Bad flags exit 2 at every level, not only the root's.
	var mark func(c *cli.Command)
	mark = func(c *cli.Command) {
		c.OnUsageError = func(_ context.Context, _ *cli.Command, err error, _ bool) error { return usageError{err} }
		for _, sub := range c.Commands {
			mark(sub)
		}
	}
	mark(root)
	return root
}

func verboseFlag() cli.Flag {
	return &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say each step: where the base and its files came from, the load path chosen and why"}
}

// overrides are root's --user/--uid/--gid.
func overrides(cmd *cli.Command) identity.Overrides {
	o := identity.Overrides{Login: cmd.String("user")}
	if cmd.IsSet("uid") {
		v := cmd.Uint32("uid")
		o.UID = &v
	}
	if cmd.IsSet("gid") {
		v := cmd.Uint32("gid")
		o.GID = &v
	}
	return o
}

// caller resolves whom the command acts for, from the process and the
// global flags.
func caller(cmd *cli.Command) (identity.Identity, error) {
	p := identity.Process{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Getenv: os.Getenv}
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
		p.Login = u.Username
	}
	id, err := identity.Resolve(p, overrides(cmd), identity.Host)
	if err != nil {
		return identity.Identity{}, usageError{err}
	}
	return id, nil
}

func usernameCmd() *cli.Command {
	return &cli.Command{
		Name:      "username",
		Usage:     "print the user name ds01 uses inside images for a login (h.baker@hertie-school.lan → h-baker)",
		ArgsUsage: "LOGIN",
		Action: func(_ context.Context, cmd *cli.Command) error {
			if cmd.NArg() != 1 {
				return usagef("username takes one LOGIN, got %d arguments", cmd.NArg())
			}
			name, err := passwd.Sanitize(cmd.Args().First())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.Root().Writer, name)
			return nil
		},
	}
}

func versionCmd() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print ds01's version",
		Action: func(_ context.Context, cmd *cli.Command) error {
			fmt.Fprintln(cmd.Root().Writer, "ds01", versionString())
			fmt.Fprintln(cmd.Root().Writer, linkLine(cmd))
			if l := installedLine(); l != "" {
				fmt.Fprintln(cmd.Root().Writer, l)
			}
			return nil
		},
	}
}

func imageCreate() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "assemble ds01-{UID}/PROJECT:latest: a base plus one layer with your account",
		ArgsUsage: "PROJECT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "base", Usage: "base image `REF` (tag or digest): from the Docker daemon, ds01's cache, or its registry"},
			&cli.StringFlag{Name: "framework", Usage: "pick the base from the AIME catalog: pytorch, tensorflow, jax"},
			&cli.StringFlag{Name: "version", Usage: "with --framework: the framework version, e.g. 2.5.1"},
			&cli.StringFlag{Name: "arch", Usage: "with --framework: the GPU architecture (CUDA_ADA, CUDA_AMPERE, …) when a version has several"},
			&cli.StringFlag{Name: "catalog", Usage: "a catalog `FILE` (AIME's ml_images.repo format) instead of the built-in one", Sources: cli.EnvVars("DS01_CATALOG")},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing image of that project"},
			&cli.BoolFlag{Name: "offline", Usage: "never touch the network; the base must be in the daemon or the cache"},
			&cli.BoolFlag{Name: "pull", Usage: "ask the registry for a newer base digest"},
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be built and how it would be loaded, load nothing"},
			&cli.StringSliceFlag{Name: "pip", Usage: "a pip requirement `SPEC` to install into the base's Python (repeatable)"},
			&cli.StringSliceFlag{Name: "requirements", Usage: "a pip requirements `FILE` (repeatable)"},
			&cli.StringSliceFlag{Name: "apt", Usage: "a Debian `PACKAGE` (name or name=version) to install (repeatable)"},
			&cli.StringSliceFlag{Name: "preset", Usage: "a package preset: jupyter, data-science, cv, nlp (repeatable)"},
			&cli.StringFlag{Name: "presets", Usage: "a presets `FILE` instead of the built-in one", Sources: cli.EnvVars("DS01_PRESETS")},
			&cli.StringFlag{Name: "wheels", Usage: "a host `DIR` of wheels pip may install from, beside its index", Sources: cli.EnvVars("DS01_WHEELS")},
			&cli.BoolFlag{Name: "no-index", Usage: "install pip packages only from --wheels and ds01's cache, never from a package index"},
			&cli.StringSliceFlag{Name: "env", Usage: "`KEY=VALUE` in the image's environment, over ds01's defaults (repeatable)"},
			verboseFlag(),
		},
		Action: runImageCreate,
	}
}

func imageUpdate() *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "rebuild an image from exactly the inputs recorded when it was created",
		ArgsUsage: "PROJECT",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "pull", Usage: "refresh the base from its registry first"},
			&cli.BoolFlag{Name: "offline", Usage: "rebuild from the cache, never touching the network"},
			&cli.BoolFlag{Name: "discard-saved", Usage: "rebuild even though container retire --save added layers that the rebuild drops"},
			&cli.BoolFlag{Name: "upgrade-packages", Usage: "resolve the recorded packages afresh instead of installing exactly the versions recorded"},
			verboseFlag(),
		},
		Action: runImageUpdate,
	}
}

func imageList() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list your images: project, base, size, created, whether the user setup matches you",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "legacy", Usage: "list the orphaned committed images of the old flow (tags with ._.)"},
		},
		Action: runImageList,
	}
}

func imageRetire() *cli.Command {
	return &cli.Command{
		Name:      "retire",
		Usage:     "remove one of your images",
		ArgsUsage: "PROJECT",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "remove it even while a container uses it"},
			&cli.BoolFlag{Name: "legacy", Usage: "remove the orphaned committed images of the old flow"},
			&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"},
		},
		Action: runImageRetire,
	}
}

func containerDeploy() *cli.Command {
	return &cli.Command{
		Name:      "deploy",
		Usage:     "create container NAME._.{UID} from your image (no docker run, no docker commit), or with --on k8s a Pod or Job from its push",
		ArgsUsage: "NAME [-- CMD...]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "image", Category: localEngine, Usage: "image `REF`; default ds01-{UID}/NAME:latest"},
			&cli.StringFlag{Name: "gpus", Usage: "GPUs: all, a count, or device=0,2"},
			&cli.StringFlag{Name: "shm-size", Category: localEngine, Usage: "size of the container's own /dev/shm (default: half the host's memory, used only as written)"},
			&cli.StringFlag{Name: "ipc", Category: localEngine, Usage: "IPC namespace: private (default), or host as AIME does (root itself only: every user's /dev/shm is then shared)"},
			&cli.StringFlag{Name: "cgroup-parent", Category: localEngine, Usage: "cgroup parent (root itself only; default: your slice ds01-{name}.slice when it exists)"},
			&cli.BoolFlag{Name: "accept-setuid-risk", Category: localEngine, Usage: "bind directories on a filesystem the host mounts without nosuid,nodev (root itself only; logged)"},
			&cli.StringFlag{Name: "memlock", Category: localEngine, Value: "unlimited", Usage: "locked-memory limit: unlimited (for pinned memory and NCCL), or a size like 8m where the daemon may not raise it"},
			&cli.StringFlag{Name: "workspace", Category: localEngine, Usage: "host `DIR` mounted at /workspace (default ~/workspace/NAME)"},
			&cli.StringFlag{Name: "data", Category: localEngine, Usage: "host `DIR` mounted at /data"},
			&cli.StringFlag{Name: "models", Category: localEngine, Usage: "host `DIR` mounted at /models"},
			&cli.BoolFlag{Name: "start", Category: localEngine, Usage: "start the container after creating it"},
			&cli.BoolFlag{Name: "force", Category: localEngine, Usage: "re-assemble an image labelled for another UID/GID"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the create request as JSON (with --on k8s the manifest as YAML), change nothing"},
			verboseFlag(),
		}, kubeDeployFlags()...),
		Action: runContainerDeploy,
	}
}

func containerList() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list your containers",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "every user's containers (root only)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		}, kubeFlags()...),
		Action: runContainerList,
	}
}

func containerRetire() *cli.Command {
	return &cli.Command{
		Name:      "retire",
		Usage:     "stop and remove a container",
		ArgsUsage: "NAME",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "save", Usage: "first put the container's changes (outside /workspace, /tmp, ~/.cache, lastlog/faillog) back into its image as one layer, without docker commit"},
			verboseFlag(),
		}, kubeFlags()...),
		Action: runContainerRetire,
	}
}

func containerOpen() *cli.Command {
	return &cli.Command{
		Name:      "open",
		Usage:     "start a container if stopped and open a login shell in it, or run CMD there as you",
		ArgsUsage: "[--on k8s] NAME [CMD...]",
		// Everything after NAME is the command's, its flags too.
		StopOnNthArg: ptr(1),
		Flags:        kubeFlags(),
		Action:       runContainerOpen,
	}
}

func basePull() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "pull a base image into ds01's cache",
		ArgsUsage: "REF",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "platform", Usage: "os/arch[/variant] to pick from a multi-arch index (default: the host's)"},
			&cli.BoolFlag{Name: "quiet", Usage: "no progress output"},
		},
		Action: runBasePull,
	}
}

func baseList() *cli.Command {
	return &cli.Command{
		Name:   "list",
		Usage:  "list the bases in ds01's cache: ref, digest, size, last used",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: runBaseList,
	}
}

func basePrune() *cli.Command {
	return &cli.Command{
		Name:   "prune",
		Usage:  "remove cache blobs no base uses",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "dry-run", Usage: "say what would be removed"}},
		Action: runBasePrune,
	}
}

func ptr[T any](v T) *T { return &v }
