package deploy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/record"
	"github.com/ds01/ds01/deploy/binds"
	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/identity/asuser"
	"github.com/ds01/ds01/passwd"
)

// Flow is how container deploy makes a container, as the seeds name the
// three flows.
type Flow int

const (
	FlowLabelled    Flow = iota + 1 // labelled for this user: created directly
	FlowAssembled                   // no DS01 labels: the user layer assembled onto it first
	FlowReassembled                 // labelled for another user, --force: assembled again
)

func (f Flow) String() string {
	switch f {
	case FlowLabelled:
		return "labelled image for this user: container created directly, no setup"
	case FlowAssembled:
		return "image without DS01 labels: user layer assembled onto it first (no docker run, no docker commit)"
	case FlowReassembled:
		return "image labelled for another user, --force: user layer assembled again for this user"
	}
	return ""
}

// DeployRequest is a container to make.
type DeployRequest struct {
	Login   string
	Account passwd.Account
	Name    string // the container's short name; the container is {Name}._.{UID}
	// Image defaults to ds01-{UID}/{Name}:latest.
	Image string
	// GPUs: "", "all", a count, or "device=0,2" (or 0+2).
	GPUs string
	// GrantGPUs, when set, turns GPUs into an allocation right before the
	// create, under a lock: release is called once the create has
	// succeeded or failed, so that the next grant sees the new
	// container's labels. Nil passes GPUs to Docker as given, allocating
	// nothing (ops decides which).
	GrantGPUs func(context.Context) (al gpu.Allocation, release func(), err error)
	// ShmSize of the container's own /dev/shm, e.g. "16g"; empty is half
	// the host's memory (see DefaultShmSize).
	ShmSize string
	// IPCHost shares the host's IPC namespace, as AIME does (root only:
	// every user's /dev/shm files are then open to the container).
	IPCHost      bool
	CgroupParent string
	// Memlock is the locked-memory limit in bytes; 0 means unlimited, what
	// GPU work (pinned memory, NCCL) wants and AIME sets.
	Memlock int64
	// Workspace is the host directory for /workspace; "" is
	// Home/workspace/NAME, made as the user if missing.
	Workspace    string
	Home         string
	Data, Models string // host directories for /data and /models; must exist
	// Cred is whose rights bind sources are resolved and made with: the
	// user's (see binds).
	Cred asuser.Cred
	// Root is set when root itself asked (not a user through sudo): only
	// root may share the host's IPC namespace, pick a cgroup parent other
	// than the user's slice, or accept the setuid risk.
	Root bool
	// SetuidRule applies the setuid rule to every bind (ds01 acts as root
	// for a user who is not root-equivalent); AcceptSetuidRisk is root's
	// logged way past it.
	SetuidRule       bool
	AcceptSetuidRisk bool
	// OwnImagesOnly refuses another user's image (see record.CheckOwnImage), for
	// a caller through sudo.
	OwnImagesOnly bool
	// Pin hands Docker pins of the bind sources instead of their paths
	// (see binds.Pin): for a user who could swap a path before a start.
	Pin    bool
	Start  bool
	Force  bool
	DryRun bool
	// Limits cap the container (the service's policy); zero is none.
	Limits Limits
	// Assemble is the build request used when the image needs the user
	// layer (its Project, BaseRef and Account are filled in here).
	Assemble pipeline.CreateRequest
}

// Limits are the resources one container may use; zero is no limit.
type Limits struct {
	Memory   int64 // bytes
	NanoCPUs int64 // CPUs × 10⁹
	PIDs     int64
}

// DeployResult says what was made.
type DeployResult struct {
	Container string // name
	ID        string
	Image     string
	Flow      Flow
	Assembled *pipeline.CreateResult // when the flow assembled an image
	Sources   Sources                `json:"-"` // the host directories bound in
	Workspace string                 // the host directory at /workspace
	Create    client.ContainerCreateOptions
	// GPUs are the devices granted; nil when none were allocated (no
	// --gpus, or --gpus passed to Docker as given).
	GPUs    *gpu.Allocation `json:",omitempty"`
	Started bool
}

// ErrOtherUser is returned for an image set up for another UID/GID.
var ErrOtherUser = record.ErrOtherUser

// Deploy makes the container, choosing the flow from the image's labels.
// A failed create or start leaves no container behind.
func (d *Daemon) Deploy(ctx context.Context, req DeployRequest) (*DeployResult, error) {
	a := req.Account
	if _, _, err := label.ImageName(a.UID, req.Name); err != nil {
		return nil, fmt.Errorf("container name: %w", err)
	}
	if err := req.checkRootOnly(); err != nil {
		return nil, err
	}
	image, ins, err := d.deployImage(ctx, req)
	if err != nil {
		return nil, err
	}
	res := &DeployResult{Container: label.ContainerName(req.Name, a.UID), Image: image}
	if _, err := d.ContainerInspect(ctx, res.Container, client.ContainerInspectOptions{}); err == nil {
		return nil, fmt.Errorf("container %s exists: open it with `ds01 container open %s`, or retire it first with `ds01 container retire %s`", res.Container, req.Name, req.Name)
	}
	srcs, err := req.sources()
	if err != nil {
		return nil, err
	}
	res.Sources, res.Workspace = srcs, srcs.Workspace.Path
	ok := false
	defer func() {
		srcs.close()
		if !ok {
			srcs.undo(res.Container)
		}
	}()

	if res.Flow, err = req.flow(image, ins.Config.Labels); err != nil {
		return nil, err
	}
	if res.Flow == FlowAssembled && !req.Force {
		if err := d.keepProjectImage(ctx, label.Tag(a.UID, req.Name), image, ins.ID, req.Name); err != nil {
			return nil, err
		}
	}
	if res.Flow != FlowLabelled {
		b := req.Assemble
		b.Project, b.BaseRef, b.Account, b.Replace, b.DryRun = req.Name, image, a, true, req.DryRun
		built, err := d.Images.Create(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("assembling the user layer onto %s: %w", image, err)
		}
		res.Assembled, res.Image = built, built.Tag
	}

	noCmd := ins.Config == nil || len(ins.Config.Cmd) == 0 && len(ins.Config.Entrypoint) == 0
	if err := d.create(ctx, req, res, srcs, noCmd); err != nil {
		return nil, err
	}
	if req.DryRun {
		return res, nil
	}
	if req.Start {
		if err := d.startNew(ctx, req, res.Container, res.ID); err != nil {
			return nil, err
		}
		res.Started = true
	}
	ok = true
	return res, nil
}

// create grants the GPUs (when req says how) and creates the container,
// holding the GPU lock until the create has succeeded or failed; a dry
// run grants, creates nothing, and releases. noCmd is an image that says
// nothing to run.
func (d *Daemon) create(ctx context.Context, req DeployRequest, res *DeployResult, srcs Sources, noCmd bool) error {
	var al *gpu.Allocation
	if req.GPUs != "" && req.GrantGPUs != nil {
		granted, release, err := req.GrantGPUs(ctx)
		if err != nil {
			return err
		}
		defer release()
		al = &granted
	}
	opts, err := req.createOptions(res.Container, res.Image, srcs, al)
	if err != nil {
		return err
	}
	if noCmd {
		// An image that says nothing to run (docker import makes such)
		// gets a shell, which is what the container is for.
		opts.Config.Cmd = []string{"bash"}
	}
	res.Create, res.GPUs = opts, al
	if req.DryRun {
		return nil
	}
	created, err := d.ContainerCreate(ctx, opts)
	if err != nil {
		return fmt.Errorf("creating %s: %w", res.Container, err)
	}
	res.ID = created.ID
	return nil
}

// deployImage is the image a deploy starts from, inspected, and refused
// when it is another user's and the caller may use only their own.
func (d *Daemon) deployImage(ctx context.Context, req DeployRequest) (string, client.ImageInspectResult, error) {
	image := req.Image
	if image == "" {
		image = label.Tag(req.Account.UID, req.Name)
	}
	ins, err := d.ImageInspect(ctx, image)
	if err != nil {
		if !cerrdefs.IsNotFound(err) {
			return "", ins, fmt.Errorf("inspecting %s: %w", image, err)
		}
		if req.Image == "" {
			return "", ins, fmt.Errorf("you have no image %s: make one with `ds01 image create %s --base REF`, or give one with --image", image, req.Name)
		}
		return "", ins, fmt.Errorf("image %s is not in the Docker daemon", image)
	}
	if req.OwnImagesOnly {
		if err := record.CheckOwnImage(image, ins.Config.Labels, req.Account.UID); err != nil {
			return "", ins, err
		}
	}
	return image, ins, nil
}

// flow is the seed's flow for an image with these labels.
func (req DeployRequest) flow(image string, labels map[string]string) (Flow, error) {
	a := req.Account
	has, uid, gid := label.Setup(labels)
	me, mine := strconv.FormatUint(uint64(a.UID), 10), strconv.FormatUint(uint64(a.GID), 10)
	switch {
	case has && uid == me && gid == mine:
		return FlowLabelled, nil
	case has && !req.Force:
		return 0, fmt.Errorf("%s: %w (UID/GID %s:%s; you are %s:%s); rebuild it for you with `ds01 image create %s --force`, or deploy with --force to assemble your user onto it",
			image, ErrOtherUser, uid, gid, me, mine, req.Name)
	case has:
		return FlowReassembled, nil
	}
	return FlowAssembled, nil
}

// startNew starts a container deploy just made, removing it if it will
// not start, with the cause named where it is a known one.
func (d *Daemon) startNew(ctx context.Context, req DeployRequest, name, id string) error {
	_, err := d.ContainerStart(ctx, id, client.ContainerStartOptions{})
	if err == nil {
		return nil
	}
	d.RemoveContainer(id)
	switch {
	case strings.Contains(err.Error(), "rlimit type 8"):
		return fmt.Errorf("starting %s: the Docker daemon may not raise the locked-memory limit to unlimited (it lacks CAP_SYS_RESOURCE); deploy with a limit it allows, e.g. --memlock 8m: %w; the container was removed", name, err)
	case req.GPUs != "" && strings.Contains(err.Error(), "device driver"):
		return fmt.Errorf("starting %s: no GPU runtime for --gpus %s on this host (is the NVIDIA container toolkit installed?): %w; the container was removed", name, req.GPUs, err)
	}
	return fmt.Errorf("starting %s: %w; the container was removed", name, err)
}

// createOptions is the container as AIME makes it, plus DS01's labels.
// al is the allocation, nil when none was made.
func (req DeployRequest) createOptions(name, image string, srcs Sources, al *gpu.Allocation) (client.ContainerCreateOptions, error) {
	a := req.Account
	labels := label.Container{
		Login: req.Login, Name: req.Name, UID: a.UID, GID: a.GID,
		Workspace: srcs.Workspace.Path, Data: srcs.Data.Path, Models: srcs.Models.Path, GPUs: gpusLabel(req.GPUs, al),
		Framework: req.Assemble.Catalog["framework"], Arch: req.Assemble.Catalog["arch"],
		CreatedAt: time.Now(), Interface: "cli", SetuidRiskAccepted: req.AcceptSetuidRisk, Extra: srcs.labels(),
	}.Encode()
	// Every container carries both allocation labels ("-" for none), so
	// that labels inherited from its image never stand for its own.
	var granted gpu.Allocation
	if al != nil {
		granted = *al
	}
	maps.Copy(labels, granted.Labels())
	mounts := srcs.mounts()
	memlock := int64(-1)
	if req.Memlock > 0 {
		memlock = req.Memlock
	}
	groups := []string{"video"}
	for _, g := range a.HostGroups {
		if g.GID >= 1000 && g.GID != 65534 {
			// By number: what bound directories are shared by.
			groups = append(groups, strconv.FormatUint(uint64(g.GID), 10))
		}
	}
	hc := &container.HostConfig{
		Mounts:   mounts,
		GroupAdd: groups,
		// Few users need to make device nodes or set file capabilities,
		// and either is a way to root on the host through a bound
		// directory (see binds).
		CapDrop: []string{"MKNOD", "SETFCAP"},
		Resources: container.Resources{
			CgroupParent: req.CgroupParent,
			Ulimits:      []*container.Ulimit{{Name: "memlock", Soft: memlock, Hard: memlock}, {Name: "stack", Soft: 67108864, Hard: 67108864}},
			Memory:       req.Limits.Memory, NanoCPUs: req.Limits.NanoCPUs,
		},
	}
	if req.Limits.PIDs > 0 {
		hc.PidsLimit = &req.Limits.PIDs
	}
	switch {
	case req.IPCHost:
		hc.IpcMode = container.IPCModeHost
	case req.ShmSize != "":
		n, err := units.RAMInBytes(req.ShmSize)
		if err != nil || n <= 0 {
			return client.ContainerCreateOptions{}, fmt.Errorf("--shm-size %q: give a size like 8g or 512m", req.ShmSize)
		}
		hc.IpcMode, hc.ShmSize = container.IPCModePrivate, n
	default:
		hc.IpcMode, hc.ShmSize = container.IPCModePrivate, DefaultShmSize()
	}
	dr, env, err := gpuOptions(req.GPUs, al)
	if err != nil {
		return client.ContainerCreateOptions{}, err
	}
	hc.DeviceRequests = dr
	return client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:      image,
			Hostname:   req.Name,
			User:       fmt.Sprintf("%d:%d", a.UID, a.GID),
			WorkingDir: "/workspace",
			Tty:        true,
			OpenStdin:  true,
			Labels:     labels,
			Env:        env,
		},
		HostConfig: hc,
	}, nil
}

// gpusLabel is what aime.mlc.GPUS and ds01.gpus say: the granted indices
// joined by '+' (mlc splits labels on commas), or --gpus as given when
// nothing was allocated.
func gpusLabel(given string, al *gpu.Allocation) string {
	if al == nil || len(al.Devices) == 0 {
		return given
	}
	var is []string
	for _, r := range al.Refs() {
		is = append(is, r.Index)
	}
	return strings.Join(is, gpu.Sep)
}

// visibleDevices is the variable the NVIDIA container toolkit also grants
// GPUs by: CUDA images set it to "all" in their config, which with the
// nvidia runtime as the default would hand every GPU to a container that
// was granted none.
const visibleDevices = "NVIDIA_VISIBLE_DEVICES"

// gpuOptions are the device request and environment of the container:
// the granted devices by UUID, and the toolkit's variable saying the
// same; no GPUs at all without --gpus ("void" is the toolkit's word for
// none); --gpus as given when it was passed to Docker unallocated.
func gpuOptions(given string, al *gpu.Allocation) ([]container.DeviceRequest, []string, error) {
	switch {
	case al != nil:
		dr := container.DeviceRequest{Driver: "nvidia", DeviceIDs: al.UUIDs(), Capabilities: [][]string{{"gpu"}}}
		return []container.DeviceRequest{dr}, []string{visibleDevices + "=" + strings.Join(al.UUIDs(), ",")}, nil
	case given == "":
		return nil, []string{visibleDevices + "=void"}, nil
	}
	dr, err := ParseGPUs(given)
	if err != nil {
		return nil, nil, err
	}
	return []container.DeviceRequest{dr}, nil, nil
}

// ParseGPUs reads --gpus as docker run does (all, a count, or
// device=0,2; '+' separates devices too), as a request for the nvidia
// driver.
func ParseGPUs(s string) (container.DeviceRequest, error) {
	dr := container.DeviceRequest{Driver: "nvidia", Capabilities: [][]string{{"gpu"}}}
	r, err := gpu.ParseRequest(s)
	switch {
	case err != nil:
		return dr, err
	case r.All:
		dr.Count = -1
	case len(r.Devices) > 0:
		dr.DeviceIDs = r.Devices
	default:
		dr.Count = r.Count
	}
	return dr, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ContainerInfo is one container as `container list` shows it.
type ContainerInfo struct {
	Name      string    `json:"name"`
	Short     string    `json:"short_name"`
	Image     string    `json:"image"`
	Status    string    `json:"status"`
	GPUs      string    `json:"gpus"`
	Created   time.Time `json:"created"`
	Workspace string    `json:"workspace"`
	User      string    `json:"user"`
}

// ListContainers lists ds01's containers: uid's, or everyone's when uid
// is nil.
func (d *Daemon) ListContainers(ctx context.Context, uid *uint32) ([]ContainerInfo, error) {
	f := client.Filters{}.Add("label", label.Managed+"=true")
	if uid != nil {
		f.Add("label", fmt.Sprintf("%s=%d", label.UserID, *uid))
	}
	cs, err := d.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	var out []ContainerInfo
	for _, c := range cs.Items {
		l := label.DecodeContainer(c.Labels)
		out = append(out, ContainerInfo{
			Name: strings.TrimPrefix(strings.Join(c.Names, ","), "/"), Short: l.Name,
			Image: c.Image, Status: c.Status, GPUs: gpusOf(c.Labels, l.GPUs), Created: time.Unix(c.Created, 0).UTC(),
			Workspace: l.Workspace, User: l.Login,
		})
	}
	slices.SortFunc(out, func(a, b ContainerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// gpusOf is a container's GPUs for container list: the indices its
// allocation labels record, joined by '+', else --gpus as it was given
// to Docker unallocated, else "-".
func gpusOf(labels map[string]string, given string) string {
	refs, err := gpu.DecodeLabels(labels)
	if err != nil || len(refs) == 0 {
		return orDash(given)
	}
	var is []string
	for _, r := range refs {
		is = append(is, r.Index)
	}
	return strings.Join(is, gpu.Sep)
}

// OwnContainer finds the user's container by short name, refusing one
// that is not theirs.
func (d *Daemon) OwnContainer(ctx context.Context, name string, uid uint32) (container.InspectResponse, error) {
	full := label.ContainerName(name, uid)
	ins, err := d.ContainerInspect(ctx, full, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return container.InspectResponse{}, fmt.Errorf("you have no container %s (ds01 container list shows yours)", full)
		}
		return container.InspectResponse{}, fmt.Errorf("inspecting %s: %w", full, err)
	}
	c := ins.Container
	if c.Config.Labels[label.UserID] != strconv.FormatUint(uint64(uid), 10) && !strings.HasSuffix(c.Name, label.ContainerName("", uid)) {
		return container.InspectResponse{}, fmt.Errorf("container %s is not yours", full)
	}
	return c, nil
}

// Retire stops a container with a 10 s grace period and removes it, and
// takes away the pins of its bind sources.
func (d *Daemon) Retire(ctx context.Context, id string) error {
	if ins, err := d.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err == nil {
		defer binds.Unpin(strings.TrimPrefix(ins.Container.Name, "/"))
	}
	timeout := 10
	if _, err := d.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stopping: %w", err)
	}
	if _, err := d.ContainerRemove(ctx, id, client.ContainerRemoveOptions{}); err != nil {
		return fmt.Errorf("removing: %w", err)
	}
	return nil
}

// Workspace is the default host directory of a container's /workspace.
func Workspace(home, name string) string { return filepath.Join(home, "workspace", name) }

// UserSlice is the user's systemd slice, ds01-{name}.slice, when the host
// has it (DS01 puts each user's containers there to share out CPU and
// memory); else "".
func UserSlice(name string) string {
	if slice := "ds01-" + name + ".slice"; HostHasSlice(slice) {
		return slice
	}
	return ""
}

// HostHasSlice says whether the host's cgroup tree has slice (a systemd
// slice name, or an absolute cgroup path).
func HostHasSlice(slice string) bool {
	if strings.HasPrefix(slice, "/") {
		_, err := os.Stat(filepath.Join("/sys/fs/cgroup", slice))
		return err == nil
	}
	for _, pat := range []string{"/sys/fs/cgroup/" + slice, "/sys/fs/cgroup/*/" + slice, "/sys/fs/cgroup/*.slice/" + slice} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return true
		}
	}
	return false
}
