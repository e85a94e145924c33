package registry

import (
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/ds01/ds01/internal/limits"
)

// unpacked decompresses a layer as it streams into the cache, to check
// it against its diff ID and to refuse a decompression bomb before Docker
// expands it onto the disk every user shares.
type unpacked struct {
	pw   *io.PipeWriter
	done chan error
}

var errAborted = errors.New("layer fetch stopped")

// unpack starts the check of layer d; writes to it are the compressed
// bytes. A layer stored uncompressed is its own diff ID.
func unpack(d v1.Descriptor, diffID v1.Hash, input string) (*unpacked, error) {
	mt := string(d.MediaType)
	if !strings.Contains(mt, "gzip") && !strings.Contains(mt, "zstd") {
		if !strings.HasSuffix(mt, ".tar") && !strings.HasSuffix(mt, "tar") {
			return nil, fmt.Errorf("%s has media type %q; ds01 reads gzip, zstd or uncompressed tar layers", input, mt)
		}
		if d.Digest != diffID {
			return nil, fmt.Errorf("%s is stored uncompressed, but the config gives it diff ID %s", input, diffID)
		}
		return &unpacked{}, nil
	}
	pr, pw := io.Pipe()
	u := &unpacked{pw: pw, done: make(chan error, 1)}
	maxOut := max(limits.ExpansionFloor, d.Size*limits.Expansion.Max)
	go func() {
		err := check(pr, mt, maxOut, diffID, input)
		pr.CloseWithError(err) // a writer still writing hears why
		u.done <- err
	}()
	return u, nil
}

func check(r io.Reader, mt string, maxOut int64, diffID v1.Hash, input string) error {
	var dec io.Reader
	if strings.Contains(mt, "zstd") {
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderLowmem(true))
		if err != nil {
			return fmt.Errorf("%s: %w", input, err)
		}
		defer z.Close()
		dec = z
	} else {
		g, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%s is not gzip: %w", input, err)
		}
		dec = g
	}
	h := sha256.New()
	l := limits.Limit{Name: "decompressed layer size", Max: maxOut, Unit: "bytes", Why: fmt.Sprintf(
		"a layer may decompress to %d times its compressed size, and at least to %d bytes; %s", limits.Expansion.Max, limits.ExpansionFloor, limits.Expansion.Why)}
	_, err := io.Copy(h, limits.Reader(dec, maxOut, func() error { return &limits.Error{Limit: l, Input: input, Got: -1} }))
	if err != nil {
		if errors.Is(err, limits.ErrLimit) || errors.Is(err, errAborted) {
			return err
		}
		return fmt.Errorf("%s does not decompress: %w", input, err)
	}
	io.Copy(io.Discard, r) // whatever follows the stream, so the writer never blocks
	return matches(h, diffID, input)
}

func matches(h hash.Hash, diffID v1.Hash, input string) error {
	if got := fmt.Sprintf("%x", h.Sum(nil)); diffID.Algorithm != "sha256" || got != diffID.Hex {
		return fmt.Errorf("%s: its content has diff ID sha256:%s, the config says %s", input, got, diffID)
	}
	return nil
}

func (u *unpacked) Write(p []byte) (int, error) {
	if u.pw == nil {
		return len(p), nil
	}
	return u.pw.Write(p)
}

// finish ends the input and waits for the verdict.
func (u *unpacked) finish() error {
	if u.pw == nil {
		return nil
	}
	u.pw.Close()
	err := <-u.done
	u.pw = nil
	return err
}

// abort stops a check that finish did not end.
func (u *unpacked) abort() {
	if u.pw != nil {
		u.pw.CloseWithError(errAborted)
		<-u.done
		u.pw = nil
	}
}
