package registry_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ds01/ds01/internal/limits"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/registry"
)

// hostile is an in-process registry on loopback that serves, per
// repository, documents and blobs made to hurt a client: lazily, so that
// a 1 GB blob costs it nothing.
type hostile struct {
	mu        sync.Mutex
	manifests map[string][]byte // "repo/ref" → document (by tag and digest)
	types     map[string]types.MediaType
	blobs     map[string]blob // digest → blob
	// override, when set for a repo, answers every request of it.
	override map[string]http.HandlerFunc
}

type blob struct {
	data []byte
	size int64 // served as zeros past data, lazily
}

func newHostile(t *testing.T) (*hostile, string) {
	h := &hostile{manifests: map[string][]byte{}, types: map[string]types.MediaType{}, blobs: map[string]blob{}, override: map[string]http.HandlerFunc{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, strings.TrimPrefix(srv.URL, "http://")
}

func (h *hostile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	repo, rest, _ := strings.Cut(p, "/")
	h.mu.Lock()
	o := h.override[repo]
	h.mu.Unlock()
	if o != nil {
		o(w, r)
		return
	}
	kind, ref, _ := strings.Cut(rest, "/")
	h.mu.Lock()
	doc, mt := h.manifests[repo+"/"+ref], h.types[repo+"/"+ref]
	b, isBlob := h.blobs[ref]
	h.mu.Unlock()
	switch {
	case kind == "manifests" && doc != nil:
		w.Header().Set("Content-Type", string(mt))
		w.Write(doc)
	case kind == "blobs" && isBlob:
		w.Header().Set("Content-Length", fmt.Sprint(b.size))
		w.Write(b.data)
		zeros := make([]byte, 64<<10)
		for left := b.size - int64(len(b.data)); left > 0; left -= int64(len(zeros)) {
			if _, err := w.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
				return
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// put serves doc under repo at tag and at its digest.
func (h *hostile) put(repo, tag string, mt types.MediaType, doc []byte) v1.Descriptor {
	d := v1.Descriptor{MediaType: mt, Size: int64(len(doc)), Digest: digestOf(doc), Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ref := range []string{tag, d.Digest.String()} {
		if ref != "" {
			h.manifests[repo+"/"+ref], h.types[repo+"/"+ref] = doc, mt
		}
	}
	return d
}

func (h *hostile) blob(data []byte, size int64) v1.Hash {
	d := digestOf(data)
	h.mu.Lock()
	h.blobs[d.String()] = blob{data: data, size: size}
	h.mu.Unlock()
	return d
}

func digestOf(b []byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(b))}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// image serves an image of the given layers (compressed bytes, each
// declared as served) with a config whose diff IDs are given, and returns
// its manifest's descriptor.
func (h *hostile) image(repo, tag string, layers [][]byte, diffIDs []v1.Hash) v1.Descriptor {
	cfg := mustJSON(v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}})
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2,
		Config: v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(cfg)), Digest: h.blob(cfg, int64(len(cfg)))}}
	for _, l := range layers {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerLayer, Size: int64(len(l)), Digest: h.blob(l, int64(len(l)))})
	}
	return h.put(repo, tag, types.DockerManifestSchema2, mustJSON(m))
}

// bomb is a gzip stream of n MiB of zeros made of one small member
// repeated: 4 GiB in about 4 MB.
func bomb(mib int) []byte {
	var one bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&one, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	return bytes.Repeat(one.Bytes(), mib)
}

// scenarios sets up every hostile repository and returns, for each, the
// ref to pull and what the error must say.
func scenarios(h *hostile, host string) []struct{ name, ref, want string } {
	// An index whose child, asked for by digest, is answered with the
	// index itself: a loop, were the digest not checked.
	idx := mustJSON(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: types.OCIImageIndex, Size: 100, Digest: digestOf([]byte("self")), Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}}})
	h.override["selfref"] = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", string(types.OCIImageIndex))
		w.Write(idx)
	}

	// A chain of 100 indexes to a real image.
	leaf := h.image("chain", "", [][]byte{gz([]byte("x"))}, nil)
	for i := 0; i < 100; i++ {
		tag := ""
		if i == 99 {
			tag = "t"
		}
		leaf = h.put("chain", tag, types.OCIImageIndex, mustJSON(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{leaf}}))
	}

	// 10 000 layers (never served: the manifest is refused).
	many := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2, Config: v1.Descriptor{MediaType: types.DockerConfigJSON, Size: 2, Digest: h.blob([]byte("{}"), 2)}}
	for i := range 10000 {
		many.Layers = append(many.Layers, v1.Descriptor{MediaType: types.DockerLayer, Size: 100, Digest: digestOf([]byte(fmt.Sprint(i)))})
	}
	h.put("layers", "t", types.DockerManifestSchema2, mustJSON(many))

	// A config declared as 1 GB, which the registry would serve lazily.
	big := h.blob([]byte("{"), 1<<30)
	h.put("bigconfig", "t", types.DockerManifestSchema2, mustJSON(v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2,
		Config: v1.Descriptor{MediaType: types.DockerConfigJSON, Size: 1 << 30, Digest: big}}))

	// A layer declared as 1000 bytes that is served as 1 GB.
	liar := gz([]byte("hello"))
	d := h.blob(liar, 1<<30)
	h.image("lies", "t", nil, []v1.Hash{digestOf([]byte("hello"))})
	var m v1.Manifest
	json.Unmarshal(h.manifests["lies/t"], &m)
	m.Layers = []v1.Descriptor{{MediaType: types.DockerLayer, Size: 1000, Digest: d}}
	h.put("lies", "t", types.DockerManifestSchema2, mustJSON(m))

	// A 4 GiB gzip bomb of 4 MB.
	h.image("bomb", "t", [][]byte{bomb(4096)}, []v1.Hash{digestOf([]byte("never"))})

	return []struct{ name, ref, want string }{
		{"self-referencing index", host + "/selfref:t", "does not match requested digest"},
		{"100-deep index chain", host + "/chain:t", "index depth limit of 4"},
		{"10 000 layers", host + "/layers:t", "number of layers limit of 125 layers (10000)"},
		{"1 GB config", host + "/bigconfig:t", "config size limit of 4194304 bytes (1073741824)"},
		{"blob whose length lies", host + "/lies:t", "more than the 1000 bytes the manifest declares"},
		{"gzip bomb", host + "/bomb:t", "decompressed layer size limit of 1073741824 bytes"},
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// Every hostile registry ends `ds01 base pull` in a clear error, within
// seconds and 200 MB of memory (the child's peak RSS), with nothing left
// half-pulled in the cache.
func TestHostileRegistryPull(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs ds01")
	}
	bin := testbed.Binary(t)
	h, host := newHostile(t)
	for _, sc := range scenarios(h, host) {
		t.Run(sc.name, func(t *testing.T) {
			cache := t.TempDir()
			t0 := time.Now()
			out, rss, err := runDS01(t, bin, cache, "base", "pull", sc.ref)
			el := time.Since(t0)
			t.Logf("%s: %s, peak RSS %d MB: %s", sc.name, el.Round(time.Millisecond), rss>>20, strings.TrimSpace(out))
			if err == nil || !strings.Contains(out, sc.want) {
				t.Errorf("ds01 base pull %s: err %v, output %q; want an error saying %q", sc.ref, err, out, sc.want)
			}
			if strings.Contains(out, "goroutine ") || strings.Contains(out, "panic") {
				t.Errorf("a crash, not an error: %s", out)
			}
			if rss > 200<<20 {
				t.Errorf("peak RSS %d MB, over 200 MB", rss>>20)
			}
			if el > 30*time.Second {
				t.Errorf("took %s", el)
			}
			assertNothingHalfPulled(t, bin, cache)
		})
	}
}

// runDS01 runs the built binary with its cache at cache and returns its
// combined output and peak RSS in bytes.
func runDS01(t *testing.T, bin, cache string, args ...string) (string, int64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, args...)
	c.Env = append(os.Environ(), "DS01_CACHE="+cache)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	var rss int64
	if c.ProcessState != nil {
		rss = c.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // kB on Linux
	}
	return out.String(), rss, err
}

func assertNothingHalfPulled(t *testing.T, bin, cache string) {
	t.Helper()
	out, _, err := runDS01(t, bin, cache, "base", "list")
	if err != nil || strings.TrimSpace(out) != "REF  DIGEST  PLATFORM  SIZE  LAST USED" {
		t.Errorf("base list after a failed pull: %v\n%s", err, out)
	}
	filepath.WalkDir(cache, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

// A registry that stalls (no headers, a body that drips, a redirect loop)
// is abandoned within a bounded time with a message that says so; the
// deadlines are shortened here (the binary's own are limits.Headers and
// limits.StallWindow, TestStalledRegistryBinary).
func TestStalledRegistry(t *testing.T) {
	h, host := newHostile(t)
	h.image("drip", "t", [][]byte{gz([]byte("x"))}, []v1.Hash{digestOf([]byte("x"))})
	h.override["headers"] = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	h.override["loop"] = func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, r.URL.Path, http.StatusFound) }
	dripDoc := h.manifests["drip/t"]
	h.override["drip"] = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
		w.Header().Set("Content-Length", fmt.Sprint(len(dripDoc)))
		for _, b := range dripDoc {
			if _, err := w.Write([]byte{b}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(500 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}
	for _, tc := range []struct{ repo, want string }{
		{"headers", "sent no answer within 2s"},
		{"drip", "fewer than the 65536 ds01 waits for"},
		{"loop", "redirected 11 times, more than ds01 follows (10)"},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			c := newCache(t)
			t0 := time.Now()
			_, err := c.Pull(context.Background(), host+"/"+tc.repo+":t", registry.PullOptions{Stall: 2 * time.Second})
			el := time.Since(t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull: %v; want an error saying %q", err, tc.want)
			}
			if tc.repo != "loop" && !errors.Is(err, registry.ErrStalled) {
				t.Errorf("%v is not ErrStalled", err)
			}
			if el > 10*time.Second {
				t.Errorf("took %s", el)
			}
			if es, _ := c.Entries(); len(es) != 0 {
				t.Errorf("entries after a failed pull: %v", es)
			}
			noTemp(t, c)
		})
	}
}

// The binary's own deadline: a registry that never answers is given up
// within limits.Headers and a little.
func TestStalledRegistryBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits out the real deadline")
	}
	h, host := newHostile(t)
	h.override["headers"] = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	bin := testbed.Binary(t)
	t0 := time.Now()
	out, _, err := runDS01(t, bin, t.TempDir(), "base", "pull", host+"/headers:t")
	el := time.Since(t0)
	if err == nil || !strings.Contains(out, "sent no answer within "+limits.Headers.String()) {
		t.Fatalf("err %v, output %q", err, out)
	}
	if el > limits.Headers+10*time.Second {
		t.Errorf("took %s", el)
	}
}

// A prune while a pull writes blobs no ref names yet is refused, and the
// pull ends with every blob in place; once it has ended, prune runs and
// keeps what the new ref uses.
func TestPruneDuringPull(t *testing.T) {
	h, host := newHostile(t)
	content := bytes.Repeat([]byte("ds01 "), 200_000)
	layer := gz(content)
	h.image("slow", "t", [][]byte{layer}, []v1.Hash{digestOf(content)})
	var m v1.Manifest
	json.Unmarshal(h.manifests["slow/t"], &m)
	release := make(chan struct{})
	h.override["slow"] = func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, m.Layers[0].Digest.String()) {
			w.Header().Set("Content-Length", fmt.Sprint(len(layer)))
			w.Write(layer[:len(layer)/2])
			w.(http.Flusher).Flush()
			<-release
			w.Write(layer[len(layer)/2:])
			return
		}
		rest := strings.TrimPrefix(r.URL.Path, "/v2/slow/")
		kind, ref, _ := strings.Cut(rest, "/")
		if kind == "manifests" {
			w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
			w.Write(h.manifests["slow/"+ref])
			return
		}
		w.Write(h.blobs[ref].data)
	}
	c := newCache(t)
	started := make(chan struct{})
	var once sync.Once
	done := make(chan error)
	go func() {
		_, err := c.Pull(context.Background(), host+"/slow:t", registry.PullOptions{Events: func(e registry.PullEvent) {
			if e.Kind == "bytes" {
				once.Do(func() { close(started) })
			}
		}})
		done <- err
	}()
	<-started
	_, err := c.Prune(false)
	close(release)
	if !errors.Is(err, registry.ErrPullUnderWay) || !strings.Contains(err.Error(), "run `ds01 base prune` again when it has ended") {
		t.Errorf("prune during a pull: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("pull: %v", err)
	}
	e, ok, _ := c.Lookup(host + "/slow:t")
	if !ok {
		t.Fatal("no entry")
	}
	if err := c.Complete(e.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prune(false); err != nil {
		t.Fatalf("prune after the pull: %v", err)
	}
	if err := c.Complete(e.Digest); err != nil {
		t.Fatalf("after prune: %v", err)
	}
	// A blob lost all the same (by hand) is named as what it is.
	os.Remove(blobFile(c, m.Layers[0].Digest))
	if err := c.Complete(e.Digest); !errors.Is(err, registry.ErrMissingBlob) || !strings.Contains(err.Error(), m.Layers[0].Digest.String()) {
		t.Errorf("a lost blob: %v", err)
	}
}
