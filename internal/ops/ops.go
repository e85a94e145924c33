// Package ops is the whole of what ds01 does, as operations: each takes
// the identity it acts for and a request value, and returns a result
// value, telling progress through Events. The CLI turns flags into
// requests and results into output; the service calls the same
// operations. Every rule of who may do what lives here or below.
package ops

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

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/api/types/container"

	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/serve/policy"
	"github.com/ds01/ds01/registry"
)

// Ops are the operations on one engine.
type Ops struct {
	D *deploy.Daemon
	// Version is ds01's, recorded in labels.
	Version string
	// ConfigDir, when set (DS01_CONFIG), holds the records instead of
	// each user's ~/.ds01-config.
	ConfigDir string
	// CacheDir is ds01's cache (registry.CacheDir).
	CacheDir string
	// Slice, when set (by the service, from its policy), is the cgroup
	// parent of a user's containers; else deploy.UserSlice.
	Slice func(id identity.Identity) (string, error)
	// Limits, when set (by the service, from its policy), caps each of a
	// user's containers.
	Limits func(id identity.Identity) deploy.Limits
	// GPU is how --gpus is allocated; nil passes it to Docker as given,
	// except for a user ds01 acts for as root (see gpuGrant).
	GPU *GPUConfig
	// PushRepo is the administrator's default repository for image push,
	// with {uid} and {project} replaced (DS01_PUSH_REPO).
	PushRepo string
	// Kube is the administrator's convention for --on k8s (the policy
	// file's [kubernetes]).
	Kube policy.Kubernetes
}

// Events is where an operation tells what happens while it runs; every
// field may be nil.
type Events struct {
	// Log gets one line per step (--verbose).
	Log io.Writer
	// PackageOutput gets the package managers' own output.
	PackageOutput io.Writer
	// LoadProgress hears of the bytes of a base streamed into the engine.
	LoadProgress func(total, n int64)
	// Waiting is told that the operation waits for another on the same
	// project.
	Waiting func(project string)
	// Warn gets what the user should know that is not an error.
	Warn func(string)
}

func (e Events) warn(format string, a ...any) {
	if e.Warn != nil {
		e.Warn(fmt.Sprintf(format, a...))
	}
}

// ErrRootOnly is an operation, or an option of one, that only root itself
// (not a user through sudo, nor root acting for a user) may ask for.
var ErrRootOnly = errors.New("for root itself only")

// Everyone says whether id may see and act on every user's things: root's
// own call, not a user through sudo nor root acting with --user.
func Everyone(id identity.Identity) bool { return id.Root && !id.ActsForUser() }

// RootOnly refuses with msg (which names the rule and what to do
// instead), unless id is root itself; the error is an ErrRootOnly.
func RootOnly(id identity.Identity, msg string) error {
	if Everyone(id) {
		return nil
	}
	return rootOnly(msg)
}

type rootOnly string

func (e rootOnly) Error() string { return string(e) }
func (e rootOnly) Unwrap() error { return ErrRootOnly }

// recordsPlace is the directory a user's records are reached from and
// where they lie beneath it, made as the user when missing.
func (o *Ops) recordsPlace(id identity.Identity) (root, rel string, err error) {
	if o.ConfigDir != "" {
		if err := id.Cred().Do(func() error { return os.MkdirAll(o.ConfigDir, 0o755) }); err != nil {
			return "", "", err
		}
		return o.ConfigDir, "images", nil
	}
	home, err := HomeOf(id)
	if err != nil {
		return "", "", fmt.Errorf("%w; set DS01_CONFIG to a directory for image records", err)
	}
	return home, filepath.Join(".ds01-config", "images"), nil
}

// Records opens id's image records, reached with id's credentials.
func (o *Ops) Records(id identity.Identity) (*record.Records, error) {
	root, rel, err := o.recordsPlace(id)
	if err != nil {
		return nil, err
	}
	return record.OpenRecords(id.Cred(), root, rel)
}

// HomeOf is the home directory of the user acted for, as the host's
// account database has it (never $HOME, which a sudo caller may set).
func HomeOf(id identity.Identity) (string, error) {
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

// Lock takes the lock of one of id's projects (see record.LockProject)
// until unlock is called. It lives beside the user's records, taken as
// the user.
func (o *Ops) Lock(ctx context.Context, id identity.Identity, project string, ev Events) (unlock func(), err error) {
	project, _, _ = strings.Cut(project, ":") // p:latest is p
	root, rel, err := o.recordsPlace(id)
	if err != nil {
		return nil, err
	}
	return record.LockProject(ctx, id.Cred(), root, rel, project, func() {
		if ev.Waiting != nil {
			ev.Waiting(project)
		}
	})
}

// keychain is whose registry credentials a pull for id uses: acting for a
// user, the user's own (root's would let any user pull what root may),
// else the process's (nil: the docker CLI's).
func keychain(id identity.Identity) (authn.Keychain, error) {
	if id.Root || !id.ActsForUser() {
		return nil, nil
	}
	home, err := HomeOf(id)
	if err != nil {
		return registry.UserKeychain(id.Cred(), "/nonexistent")
	}
	return registry.UserKeychain(id.Cred(), home)
}

// Cache opens ds01's cache.
func (o *Ops) Cache() (*registry.Cache, error) {
	return registry.OpenCache(o.CacheDir)
}

// fill completes a build request with what every build for id shares:
// who it is for, the cache, where its record goes, whose credentials
// pull and read package files.
func (o *Ops) fill(id identity.Identity, req *pipeline.CreateRequest, ev Events) error {
	recs, err := o.Records(id)
	if err != nil {
		return err
	}
	cache, err := o.Cache()
	if err != nil {
		recs.Close()
		return err
	}
	req.Login, req.Account, req.Version, req.Cache = id.Login, id.Account(), o.Version, cache
	req.Records = recs
	req.OwnImagesOnly = !id.Root && id.ActsForUser()
	if req.Resolve.Pull.Keychain, err = keychain(id); err != nil {
		recs.Close()
		return err
	}
	req.Resolve.Cache = cache
	req.Resolve.LoadProgress = ev.LoadProgress
	req.Packages.Cred = id.CallerCred()
	req.Log, req.PackageOutput = ev.Log, ev.PackageOutput
	return nil
}

// Operations are the operations a user reaches, in this process (*Ops)
// or through the service (the api package's Client): the CLI uses one or
// the other the same way.
type Operations interface {
	CreateImage(ctx context.Context, id identity.Identity, r ImageCreate, ev Events) (*pipeline.CreateResult, error)
	UpdateImage(ctx context.Context, id identity.Identity, r ImageUpdate, ev Events) (*pipeline.CreateResult, error)
	ListImages(ctx context.Context, id identity.Identity) ([]pipeline.ImageInfo, error)
	LegacyImages(ctx context.Context, id identity.Identity) ([]pipeline.LegacyImage, error)
	RetireImage(ctx context.Context, id identity.Identity, project string, force bool, ev Events) (string, error)
	RetireLegacy(ctx context.Context, id identity.Identity, tags []string) ([]string, error)
	DeployContainer(ctx context.Context, id identity.Identity, r ContainerDeploy, ev Events) (*deploy.DeployResult, error)
	ListContainers(ctx context.Context, id identity.Identity, all bool) ([]deploy.ContainerInfo, error)
	RetireContainer(ctx context.Context, id identity.Identity, r ContainerRetire, ev Events) (*Retired, error)
	OpenContainer(ctx context.Context, id identity.Identity, name string) (container.InspectResponse, error)
	PullBase(ctx context.Context, id identity.Identity, r BasePull) (registry.PullResult, error)
	ListBases() ([]registry.Entry, error)
	PushImage(ctx context.Context, id identity.Identity, r ImagePush, ev Events) (*PushResult, error)
	PullImage(ctx context.Context, id identity.Identity, r ImagePull, ev Events) (*PullResult, error)
}

var _ Operations = (*Ops)(nil)
