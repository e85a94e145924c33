// Package assemble makes a ds01 image: a base, one small layer with the
// user's account, and a config that says so. Values in, values out: the
// base stays lazy (only its config and the few files the user layer needs
// are read), and nothing here talks to Docker.
package assemble

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"

	"github.com/ds01/ds01/assemble/label"
)

// Options are the inputs of one build besides the base.
type Options struct {
	Account passwd.Account
	// Created is the time of the new layer's files, history entry and
	// config. Zero means the base's creation time, so that the same inputs
	// give the same image ID on any machine and any day.
	Created time.Time
	// Labels are merged over the base's labels and ds01's own.
	Labels map[string]string
	// Env are KEY=VALUE settings over the base's and DefaultEnv (--env).
	Env []string
	// HomeFiles are extra files for the user's home (relative paths), such
	// as a Jupyter kernel for the project.
	HomeFiles map[string][]byte
}

// DefaultEnv is what every DS01 image sets, after the seeds' generated
// Dockerfile: unbuffered Python output, GPUs numbered as nvidia-smi shows
// them, and model and plot caches in the workspace, which outlives
// containers, instead of the home, which does not.
var DefaultEnv = []string{
	"PYTHONUNBUFFERED=1",
	"CUDA_DEVICE_ORDER=PCI_BUS_ID",
	"HF_HOME=/workspace/.cache/huggingface",
	"TORCH_HOME=/workspace/.cache/torch",
	"MPLCONFIGDIR=/workspace/.cache/matplotlib",
}

// setEnv sets KEY=VALUE entries in env, replacing a KEY already there.
func setEnv(env []string, kvs ...string) []string {
	env = slices.Clone(env)
	for _, kv := range kvs {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		if i >= 0 {
			env[i] = kv
		} else {
			env = append(env, kv)
		}
	}
	return env
}

// Result is the assembled image and what went into it.
type Result struct {
	Image     v1.Image
	UserLayer v1.Layer
	passwd.Result
}

// Files reads from the base what the user layer needs.
func Files(base v1.Image) (*layers.Files, error) {
	ls, err := base.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing base layers: %w", err)
	}
	stack := make([]layers.Layer, len(ls))
	for i, l := range ls {
		stack[i] = l
	}
	fs, err := layers.Find(stack, layers.UserWant)
	if err != nil {
		return nil, fmt.Errorf("reading the base's account files: %w", err)
	}
	return fs, nil
}

// Image assembles the user's image from a base whose files were read with
// Files (or from any other source of the same files, such as a container
// of the base in the Docker daemon).
func Image(base v1.Image, files *layers.Files, opts Options) (Result, error) {
	cfg, err := base.ConfigFile()
	if err != nil {
		return Result{}, fmt.Errorf("reading base config: %w", err)
	}
	created := opts.Created
	if created.IsZero() {
		created = cfg.Created.Time
	}
	created = created.UTC().Truncate(time.Second)

	ul, err := layers.UserLayer(files, opts.Account, created)
	if err != nil {
		return Result{}, err
	}
	entries := ul.Entries
	if len(opts.HomeFiles) > 0 {
		if entries, err = layers.AddHomeFiles(entries, opts.Account, created, opts.HomeFiles); err != nil {
			return Result{}, err
		}
	}
	var buf bytes.Buffer
	if err := layers.Write(&buf, entries); err != nil {
		return Result{}, fmt.Errorf("writing user layer: %w", err)
	}
	mt, err := base.MediaType()
	if err != nil {
		return Result{}, fmt.Errorf("reading base manifest type: %w", err)
	}
	layer := layers.ForManifest(layers.FromBytes(buf.Bytes()), mt)

	a := opts.Account
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: fmt.Sprintf("ds01: user %s (%d:%d), sudo, home, empty lastlog/faillog", a.Name, a.UID, a.GID),
			Comment:   "assembled by ds01, no build",
		},
	})
	if err != nil {
		return Result{}, fmt.Errorf("appending user layer: %w", err)
	}
	newCfg, err := img.ConfigFile()
	if err != nil {
		return Result{}, fmt.Errorf("reading assembled config: %w", err)
	}
	newCfg = newCfg.DeepCopy()
	newCfg.Created = v1.Time{Time: created}
	c := &newCfg.Config
	// Merged, never replaced: the base's labels (CUDA versions, licences)
	// stay visible to whoever inspects the image.
	labels := maps.Clone(c.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, map[string]string{
		label.AIMEHasUserSetup: "true",
		label.AIMEUserID:       strconv.FormatUint(uint64(a.UID), 10),
		label.AIMEGroupID:      strconv.FormatUint(uint64(a.GID), 10),
		label.AIMEUsername:     a.Name,
	})
	maps.Copy(labels, opts.Labels)
	delete(labels, label.Layers)
	if rec, ok, err := LayersRecord(img); err != nil {
		return Result{}, err
	} else if ok {
		labels[label.Layers] = rec
	}
	c.Labels = labels
	// Numeric, so that runAsNonRoot-style checks can read it. The UID
	// alone, not UID:GID: given a group, runc skips /etc/group and the
	// user would lose sudo and video (GPU device nodes); given the UID, it
	// takes the primary GID from the passwd entry ds01 wrote.
	c.User = strconv.FormatUint(uint64(a.UID), 10)
	c.WorkingDir = "/workspace"
	c.Env = setEnv(c.Env, DefaultEnv...)
	c.Env = setEnv(c.Env, opts.Env...)
	c.Env = withUserPath(c.Env, a.HomeDir()+"/.local/bin")
	// A login shell, so that ~/.profile and the DS01 lines of .bashrc run.
	c.Cmd = []string{"bash", "-l"}
	img, err = mutate.ConfigFile(img, newCfg)
	if err != nil {
		return Result{}, fmt.Errorf("setting config: %w", err)
	}
	return Result{Image: img, UserLayer: layer, Result: ul.Result}, nil
}

// defaultPath is Docker's PATH for an image that sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func withUserPath(env []string, dir string) []string {
	env = slices.Clone(env)
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			parts := slices.DeleteFunc(strings.Split(v, ":"), func(p string) bool { return p == dir })
			env[i] = "PATH=" + strings.Join(append([]string{dir}, parts...), ":")
			return env
		}
	}
	return append(env, "PATH="+dir+":"+defaultPath)
}

// SourceDateEpoch reads SOURCE_DATE_EPOCH strictly: unset or empty is the
// zero time (use the base's), anything but a whole number of seconds is an
// error rather than a silent fallback to a time nobody asked for.
func SourceDateEpoch(getenv func(string) string) (time.Time, error) {
	v := getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a whole number of seconds since 1970; unset it to use the base image's creation time", v)
	}
	return time.Unix(n, 0).UTC(), nil
}

// JupyterFiles are the home files of the jupyter preset: a kernel for the
// project, and a server configuration that listens inside the container
// only and keeps Jupyter's token, so that no unauthenticated server is
// open to the other users of the machine.
func JupyterFiles(project string) map[string][]byte {
	kernel := fmt.Sprintf(`{
  "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
  "display_name": "Python 3 (%s)",
  "language": "python",
  "metadata": {"debugger": true}
}
`, project)
	config := `# Written by ds01 image create --preset jupyter.
# Listen inside the container only (reach it with docker exec or an SSH
# tunnel), and never without a token or password: other users share this
# machine.
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.open_browser = False
c.ServerApp.allow_remote_access = False
c.ServerApp.root_dir = "/workspace"
# The token is left to Jupyter: a random one each start, printed in the log.
`
	return map[string][]byte{
		".local/share/jupyter/kernels/" + project + "/kernel.json": []byte(kernel),
		".jupyter/jupyter_server_config.py":                        []byte(config),
	}
}

// LayersRecord is the label.Layers value for img: its layer descriptors,
// media type, digest and size only. ok is false when a size is unknown, as
// for a base seen through the graphdriver store, which never needs them.
func LayersRecord(img v1.Image) (rec string, ok bool, err error) {
	m, err := img.Manifest()
	if err != nil {
		return "", false, fmt.Errorf("reading manifest: %w", err)
	}
	descs := make([]v1.Descriptor, 0, len(m.Layers))
	for _, l := range m.Layers {
		if l.Size <= 0 {
			return "", false, nil
		}
		descs = append(descs, v1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	return label.FormatLayers(descs), true, nil
}

// ParseLayersRecord reads a label.Layers value, checking that it names
