package pipeline

import (
	"fmt"

	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/internal/engine"
)

// LoadKind is how an image is sent to the engine.
type LoadKind int

const (
	// LoadDelta leaves the base's layers out of the archive.
	LoadDelta LoadKind = iota
	// LoadFull sends the base with the image.
	LoadFull
	// LoadPending is a dry run that stops before the base is resolved:
	// Pending says what would happen first.
	LoadPending
)

// FullReason is why a whole image is sent.
type FullReason int

const (
	FullNotHeld    FullReason = iota + 1 // the engine did not keep the base as ds01's cache has it
	FullAfterCheck                       // a delta load failed its check
)

// Pending is the step a dry run would take before the load.
type Pending int

const (
	PendingNone     Pending = iota
	PendingExport           // read the base out of the engine into the cache
	PendingStream           // pull (or take from the cache) and stream the base in
	PendingPackages         // install the packages
)

// LoadPath is how create loads (or would load) the image, and why.
type LoadPath struct {
	Kind        LoadKind
	Store       engine.Store
	Descriptors source.DescriptorSource // a delta on the containerd store
	Why         FullReason              // a full load
	DryRun      bool
	Pending     Pending
	From        string // for PendingStream: where the base would come from
}

func (p LoadPath) String() string {
	if p.Kind == LoadPending {
		return p.pending()
	}
	s := "delta: graphdriver store, base layers left out of the archive"
	switch {
	case p.Kind == LoadFull && p.Why == FullAfterCheck:
		s = "full: containerd image store, after a delta load failed its check"
	case p.Kind == LoadFull:
		s = "full: containerd image store, the engine did not take the base as ds01's cache has it, so the base is sent with the image"
	case p.Store == engine.Containerd:
		s = "delta: containerd image store, base layers left out, named by the descriptors the engine holds them under, from " + p.Descriptors.String()
	}
	if p.DryRun {
		return "dry run, nothing loaded; would load " + s
	}
	return s
}

func (p LoadPath) pending() string {
	switch {
	case p.Pending == PendingExport:
		return "dry run, nothing loaded; containerd image store: the engine holds the base but no source names its layer descriptors, so it would be read out of the engine once (docker save) into ds01's cache, then the user layer loaded as a delta"
	case p.Pending == PendingPackages:
		return "dry run, nothing installed or loaded: the packages would be installed in a throwaway container of the base (or taken from ds01's cache), then the user layer added"
	case p.Store == engine.Containerd:
		return "dry run, nothing loaded; containerd image store: the engine does not hold the base, so it would be " + p.From + " and streamed in once, then the user layer loaded as a delta"
	}
	return fmt.Sprintf("dry run, nothing loaded; the base is not in the daemon: it would be %s and streamed into the daemon once, then the user layer loaded as a delta", p.From)
}
