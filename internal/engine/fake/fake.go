// Package fake is an in-memory Docker Engine for fast tests of ds01's
// logic, modelling both image stores: the graphdriver store (image IDs are
// config digests, a load may leave out the file of a layer whose chain the
// engine holds) and the containerd image store (image IDs are manifest
// digests, layers are kept under the descriptors their manifest lists, and
// an image whose manifest names a blob the store lacks loads but is not
// whole). It implements engine.Engine with the moby client's signatures.
package fake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/internal/engine"
)

// Engine is a Docker Engine held in memory. Its methods are safe for
// concurrent use.
type Engine struct {
	mu    sync.Mutex
	store engine.Store
	// omitIncomplete lists no image whose manifest names a missing blob,
	// as Engine 25-27 do; later engines list it with Available false.
	omitIncomplete bool

	layers     map[v1.Hash][]byte  // uncompressed layer tars, by diff ID
	chains     map[v1.Hash]v1.Hash // layer chains (graphdriver) or snapshots (containerd), by chain ID
	blobs      map[v1.Hash][]byte  // containerd's content store
	images     map[string]*held    // by ID
	tags       map[string]string   // familiar tag (or name@digest) → image ID
	containers map[string]*ctr     // by ID
	seq        int

	calls      map[string]int
	loadBytes  int64
	failNext   string
	corruptNxt bool
}

var _ engine.Engine = (*Engine)(nil)

// Option changes how a new Engine behaves.
type Option func(*Engine)

// OmitIncomplete makes the image list leave out an image whose manifest
// names a blob the content store lacks, as Engines 25 to 27 do, instead of
// listing it with its manifest not Available (API 1.47 and later).
func OmitIncomplete() Option { return func(e *Engine) { e.omitIncomplete = true } }

// New is an empty engine with the given image store.
func New(store engine.Store, opts ...Option) *Engine {
	e := &Engine{
		store: store, layers: map[v1.Hash][]byte{}, chains: map[v1.Hash]v1.Hash{}, blobs: map[v1.Hash][]byte{},
		images: map[string]*held{}, tags: map[string]string{}, containers: map[string]*ctr{}, calls: map[string]int{},
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Store is the image store the engine models.
func (e *Engine) Store() engine.Store { return e.store }

// called counts a call of method and takes the lock; the caller unlocks.
func (e *Engine) called(method string) {
	e.mu.Lock()
	e.calls[method]++
}

// Calls is how often each method was called, by name ("ImageLoad").
func (e *Engine) Calls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.calls)
}

// LoadedBytes is the bytes of every archive ImageLoad has read.
func (e *Engine) LoadedBytes() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loadBytes
}

// FailNextLoad makes the next ImageLoad read its archive and then report
// msg as the daemon reports a failed load, holding nothing of it.
func (e *Engine) FailNextLoad(msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failNext = msg
}

// CorruptNextLoad makes the next ImageLoad succeed but hold another image
// than the archive's under its tags: its config carries one more label,
// so its ID is not the one sent, as a load the daemon got wrong.
func (e *Engine) CorruptNextLoad() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.corruptNxt = true
}

// Info reports the store as docker info does, which engine.Detect reads.
func (e *Engine) Info(ctx context.Context, options client.InfoOptions) (client.SystemInfoResult, error) {
	e.called("Info")
	defer e.mu.Unlock()
	info := system.Info{ID: "fake", Name: "fake", ServerVersion: "28.5.0-fake", OperatingSystem: "fake", OSType: "linux",
		Containers: len(e.containers), Images: len(e.images)}
	if e.store == engine.Containerd {
		info.Driver = "overlayfs"
		info.DriverStatus = [][2]string{{"driver-type", "io.containerd.snapshotter.v1"}}
	} else {
		info.Driver = "overlay2"
		info.DriverStatus = [][2]string{{"Backing Filesystem", "extfs"}, {"Supports d_type", "true"}}
	}
	return client.SystemInfoResult{Info: info}, nil
}

// Events has no events: both channels are closed.
func (e *Engine) Events(ctx context.Context, options client.EventsListOptions) client.EventsResult {
	e.called("Events")
	defer e.mu.Unlock()
	msgs, errs := make(chan events.Message), make(chan error)
	close(msgs)
	close(errs)
	return client.EventsResult{Messages: msgs, Err: errs}
}

// DaemonHost is "fake://", which no code takes for the local daemon.
func (e *Engine) DaemonHost() string { return "fake://" }

// Close does nothing.
func (e *Engine) Close() error { return nil }

// daemonError is an error as the moby client returns one from the daemon:
// its text starts as the client's does, and errors.Is matches its class
// (cerrdefs.ErrNotFound, ErrConflict, …), as cerrdefs.IsNotFound asks.
type daemonError struct {
	msg   string
	class error
}

func (e *daemonError) Error() string        { return "Error response from daemon: " + e.msg }
func (e *daemonError) Is(target error) bool { return errors.Is(e.class, target) }

func notFound(format string, a ...any) error {
	return &daemonError{msg: fmt.Sprintf(format, a...), class: cerrdefs.ErrNotFound}
}

func conflict(format string, a ...any) error {
	return &daemonError{msg: fmt.Sprintf(format, a...), class: cerrdefs.ErrConflict}
}

func invalid(format string, a ...any) error {
	return &daemonError{msg: fmt.Sprintf(format, a...), class: cerrdefs.ErrInvalidArgument}
}

// errExec is every exec call: the fake runs no process.
var errExec = &daemonError{msg: "exec is not supported by the fake engine: it runs no process; test exec paths against the real daemon", class: cerrdefs.ErrNotImplemented}

// ExecCreate is not supported: the fake runs no process.
func (e *Engine) ExecCreate(ctx context.Context, id string, options client.ExecCreateOptions) (client.ExecCreateResult, error) {
	e.called("ExecCreate")
	defer e.mu.Unlock()
	return client.ExecCreateResult{}, errExec
}

// ExecAttach is not supported: the fake runs no process.
func (e *Engine) ExecAttach(ctx context.Context, execID string, options client.ExecAttachOptions) (client.ExecAttachResult, error) {
	e.called("ExecAttach")
	defer e.mu.Unlock()
	return client.ExecAttachResult{}, errExec
}

// ExecInspect is not supported: the fake runs no process.
func (e *Engine) ExecInspect(ctx context.Context, execID string, options client.ExecInspectOptions) (client.ExecInspectResult, error) {
	e.called("ExecInspect")
	defer e.mu.Unlock()
	return client.ExecInspectResult{}, errExec
}
