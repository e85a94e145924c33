// Package limits names every bound ds01 puts on input it does not control
// (a registry, a base image, a file a user names), with the reason for
// each, so that one hostile input costs the server a clear error and never
// a crash, a hang or its memory. A limit hit is an *Error naming the limit
// and the input; nothing is kept of what was read before it.
package limits

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Limit is one bound, by name, with why it is what it is.
type Limit struct {
	Name string
	Max  int64
	Unit string // "bytes", "layers", …: how Max reads in a message
	Why  string
}

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

var (
	// Manifest bounds an image manifest or index as fetched or read from
	// the cache: a CUDA base with 100 layers has a 20 kB manifest, an
	// index of every platform a few kB.
	Manifest = Limit{"manifest or index size", 4 * mib, "bytes", "a real manifest of the 125 layers Docker can load is about 25 kB"}
	// IndexDepth bounds how many indexes lead to the image: one is
	// usual, two are seen (an index of indexes); a cycle never ends.
	IndexDepth = Limit{"index depth", 4, "nested indexes", "registries nest at most one or two indexes; a cycle would never end"}
	// Layers is what Docker's overlay2 driver can stack.
	Layers = Limit{"number of layers", 125, "layers", "Docker refuses to load an image of more than about 125 layers (overlay2's limit), after storing it in full"}
	// Config bounds an image config: history, labels and env of a big
	// framework base are tens of kB.
	Config = Limit{"config size", 4 * mib, "bytes", "the config of a large framework base is tens of kB"}
	// PullBytes is the disk budget of one pull: the layers as declared,
	// compressed. The largest framework bases are about 20 GB.
	PullBytes = Limit{"pull size", 100 * gib, "bytes", "the largest framework bases are about 20 GB compressed; more fills the disk every user shares"}
	// Expansion bounds what a layer may decompress to: this many times its
	// compressed size, and at least ExpansionFloor bytes. Real layers
	// compress 2 to 10 times; a gzip bomb compresses a thousand times.
	Expansion      = Limit{"decompression ratio", 100, "times the compressed size", "real layers compress 2 to 10 times; a decompression bomb a thousand times"}
	ExpansionFloor = int64(1 * gib)
	// AccountFile bounds one account database read out of a base
	// (/etc/passwd, group, shadow, gshadow): 16 MiB is 200 000 accounts.
	AccountFile = Limit{"account file size", 16 * mib, "bytes", "16 MiB holds 200 000 accounts; a base ships a few dozen"}
	// SkelFile, SkelEntries and SkelBytes bound /etc/skel, which is copied
	// into every user's image: a distribution's has three small files.
	SkelFile    = Limit{"/etc/skel file size", 16 * mib, "bytes", "every file of /etc/skel goes into each user's image; a distribution ships a few kB"}
	SkelEntries = Limit{"/etc/skel entries", 10000, "entries", "a distribution's /etc/skel has a handful of entries"}
	SkelBytes   = Limit{"/etc/skel size", 64 * mib, "bytes", "/etc/skel is copied into every user's image; a distribution ships a few kB"}
	// EtcArchive bounds the one archive of /etc read out of a container of
	// the base; past it, the wanted files are copied one by one.
	EtcArchive = Limit{"/etc archive size", 64 * mib, "bytes", "/etc of a large base is a few MB; past this the wanted files are read one by one"}
	// UserFile bounds a file a user names (--catalog, --presets,
	// --requirements): each is a few kB of text.
	UserFile = Limit{"size of a file named on the command line", 1 * mib, "bytes", "catalogs, presets and requirements files are a few kB of text"}
	// OutputLine bounds one line of a package manager's output as shown.
	OutputLine = Limit{"output line length", 64 * kib, "bytes", "a line without a newline must not grow a buffer without bound"}
)

// Network deadlines: a registry that stops talking is abandoned.
const (
	// Dial and TLS handshake.
	Connect = 15 * time.Second
	// Headers is how long a registry may take to start its answer.
	Headers = 30 * time.Second
	// StallWindow and StallBytes: a body that delivers fewer than
	// StallBytes in any StallWindow is abandoned (a registry that drips a
	// byte every few seconds never finishes a layer).
	StallWindow = 30 * time.Second
	StallBytes  = 64 * kib
	// Metadata bounds fetching manifests, indexes and the config, all
	// small, together.
	Metadata = 2 * time.Minute
	// Redirects is the longest redirect chain followed (Go's own default,
	// which go-containerregistry's client replaces with none).
	Redirects = 10
)

// Error is a limit hit by an input.
type Error struct {
	Limit Limit
	Input string // what was read: a blob, a file, a ref
	Got   int64  // what the input has or asked for; -1 when unknown
}

func (e *Error) Error() string {
	got := ""
	if e.Got >= 0 {
		got = fmt.Sprintf(" (%d)", e.Got)
	}
	return fmt.Sprintf("%s is over ds01's %s limit of %d %s%s: %s", e.Input, e.Limit.Name, e.Limit.Max, e.Limit.Unit, got, e.Limit.Why)
}

// ErrLimit matches every *Error with errors.Is.
var ErrLimit = errors.New("over a ds01 limit")

func (e *Error) Is(target error) bool { return target == ErrLimit }

// Check is an *Error when got is over l for input, else nil.
func (l Limit) Check(input string, got int64) error {
	if got > l.Max {
		return &Error{Limit: l, Input: input, Got: got}
	}
	return nil
}

// Reader reads at most max bytes of r and fails with err once r has
// more, unlike io.LimitReader, whose cut reads as a clean end.
func Reader(r io.Reader, max int64, err func() error) io.Reader {
	return &reader{r: r, left: max, err: err}
}

type reader struct {
	r    io.Reader
	left int64
	err  func() error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.left < 0 {
		return 0, r.err()
	}
	if int64(len(p)) > r.left+1 {
		p = p[:r.left+1]
	}
	n, err := r.r.Read(p)
	r.left -= int64(n)
	if r.left < 0 {
		// One byte past the limit: the input is larger.
		return n - 1, r.err()
	}
	return n, err
}

// ReadAll reads all of r, failing with an *Error for input once it has
// more than l allows.
func (l Limit) ReadAll(input string, r io.Reader) ([]byte, error) {
	return io.ReadAll(Reader(r, l.Max, func() error { return &Error{Limit: l, Input: input, Got: -1} }))
}
