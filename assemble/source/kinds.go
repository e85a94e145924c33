package source

// BaseSource is where a base was found.
type BaseSource int

const (
	FromDaemon BaseSource = iota
	FromCache
	FromRegistry
)

func (s BaseSource) String() string {
	return [...]string{"daemon", "cache", "registry"}[s]
}

// DescriptorKind is where the layer descriptors of a base the containerd
// image store holds came from (see heldBase).
type DescriptorKind int

const (
	DescNone DescriptorKind = iota
	// DescRecord: ds01's ds01.layers label on an image it loaded.
	DescRecord
	// DescCacheByID: the manifest in ds01's cache whose digest is the
	// engine's ID.
	DescCacheByID
	// DescRegistry: the registry, by the digest the engine pulled it by.
	DescRegistry
	// DescContentStore: containerd's content store.
	DescContentStore
	// DescExported: the engine's own manifest, read out of it once.
	DescExported
	// DescStreamed: the cached manifest, the base streamed in under it.
	DescStreamed
	// DescPackageImage: the record on the shared package image.
	DescPackageImage
)

// DescriptorSource is a DescriptorKind with what names it: the digest
// pulled by, the socket, the bytes exported, the package image.
type DescriptorSource struct {
	Kind   DescriptorKind
	Detail string
}

func (s DescriptorSource) String() string {
	switch s.Kind {
	case DescRecord:
		return "ds01's record in the image's ds01.layers label"
	case DescCacheByID:
		return "the manifest in ds01's cache with the engine's ID"
	case DescRegistry:
		return "its registry, by the digest the engine pulled it by (" + s.Detail + ")"
	case DescContentStore:
		return "containerd's content store at " + s.Detail
	case DescExported:
		return "the engine's own manifest, read out of it once into ds01's cache (" + s.Detail + " bytes)"
	case DescStreamed:
		return "the manifest in ds01's cache, the engine holding it under that digest"
	case DescPackageImage:
		return "ds01's record in the image's ds01.layers label (the shared package image " + s.Detail + ")"
	}
	return ""
}
