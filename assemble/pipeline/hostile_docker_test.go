package pipeline_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/layers"
)

const rootPasswd = "root:x:0:0:root:/root:/bin/bash\n"

// entry is one file of a crafted base; a body of size bytes of 'x' is
// streamed when data is nil and size > 0.
type entry struct {
	h    tar.Header
	data []byte
}

func file(name, data string) entry {
	return entry{h: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}, data: []byte(data)}
}
func big(name string, size int64) entry {
	return entry{h: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}}
}
func node(name string, typ byte, mode int64, major int64) entry {
	return entry{h: tar.Header{Name: name, Typeflag: typ, Mode: mode, Devmajor: major, Devminor: 3}}
}
func tdir(name string) entry {
	return entry{h: tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755}}
}
func tlink(name, target string) entry {
	return entry{h: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

// importBase makes an image of the entries with `docker import`, removed
// when the test ends.
func importBase(t *testing.T, d *deploy.Daemon, name string, es []entry) string {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for _, e := range es {
			e.h.ModTime, e.h.Format = time.Unix(1700000000, 0), tar.FormatPAX
			if err := tw.WriteHeader(&e.h); err != nil {
				pw.CloseWithError(err)
				return
			}
			if e.h.Typeflag == tar.TypeReg {
				var err error
				if e.data != nil {
					_, err = tw.Write(e.data)
				} else {
					_, err = io.CopyN(tw, zeroX{}, e.h.Size)
				}
				if err != nil {
					pw.CloseWithError(err)
					return
				}
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	ref := testbed.Prefix(t) + "/" + name + ":hostile"
	testbed.RemoveImage(t, d, ref)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rc, err := d.Engine.(*client.Client).ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, ref, client.ImageImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(rc)
	rc.Close()
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("docker import: %s", out)
	}
	return ref
}

type zeroX struct{}

func (zeroX) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// Hostile bases crafted with `docker import`, read as image create reads
// them (a container of the base, never started): each a clear error or a
// correct user layer, in bounded time, and no container left behind.
func TestHostileBases(t *testing.T) {
	d := testbed.Docker(t)
	etc := []entry{tdir("etc"), file("etc/group", "root:x:0:\n"), tdir("etc/skel"), tdir("home"), tdir("bin")}
	with := func(es ...entry) []entry { return append(append([]entry(nil), etc...), es...) }
	many := with(file("etc/passwd", rootPasswd))
	for i := range 100_000 {
		many = append(many, file(fmt.Sprintf("etc/skel/f%06d", i), ""))
	}
	chain := with(tlink("etc/passwd", "/l/0"), tdir("l"))
	for i := range 1000 {
		chain = append(chain, tlink(fmt.Sprintf("l/%d", i), fmt.Sprintf("/l/%d", i+1)))
	}
	chain = append(chain, file("l/1000", rootPasswd))
	longLine := rootPasswd + strings.Repeat("a", 10<<20)
	var refs []string
	for _, tc := range []struct {
		name string
		es   []entry
		want string // "" for a correct layer
	}{
		{"passwd over the size limit", with(big("etc/passwd", 20<<20)), "account file size limit of 16777216 bytes (20971520)"},
		{"a 10 MB line in passwd", with(file("etc/passwd", longLine)), ""},
		{"100 000 files in /etc/skel", many, "/etc/skel entries limit of 10000"},
		{"a file over the limit in /etc/skel", with(file("etc/passwd", rootPasswd), big("etc/skel/huge", 20<<20)), "/etc/skel file size limit"},
		{"FIFOs and devices in /etc/skel", with(file("etc/passwd", rootPasswd), node("etc/skel/fifo", tar.TypeFifo, 0o644, 0),
			node("etc/skel/null", tar.TypeChar, 0o666, 1), node("etc/skel/disk", tar.TypeBlock, 0o660, 8), file("etc/skel/.profile", "# p\n")), ""},
		{"passwd a directory", with(tdir("etc/passwd"), file("etc/passwd/x", "x")), "/etc/passwd is not a regular file"},
		{"passwd a FIFO", with(node("etc/passwd", tar.TypeFifo, 0o644, 0)), "/etc/passwd is not a regular file"},
		{"passwd a chain of 1000 symlinks", chain, "symbolic link"},
		{"passwd a hard link (finding 13)", with(file("etc/aaa-passwd", rootPasswd), entry{h: tar.Header{Name: "etc/passwd", Typeflag: tar.TypeLink, Linkname: "etc/aaa-passwd"}}), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := importBase(t, d, strings.ReplaceAll(strings.ToLower(strings.Fields(tc.name)[0]+fmt.Sprint(len(tc.es))), "/", ""), tc.es)
			refs = append(refs, ref)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			t0 := time.Now()
			fs, err := source.Files(ctx, d.Docker, ref, layers.UserWant)
			var res layers.UserResult
			if err == nil {
				res, err = layers.UserLayer(fs, hbaker, t0)
			}
			t.Logf("%s: %s: %v", tc.name, time.Since(t0).Round(time.Millisecond), err)
			if ctx.Err() != nil {
				t.Fatal("timed out: a hang")
			}
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v; want one saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]layers.Entry{}
			for _, e := range res.Entries {
				got[e.Path] = e
			}
			pw := string(got["etc/passwd"].Data)
			if !strings.HasPrefix(pw, "root:x:0:0:") || !strings.Contains(pw, "\nh-baker:x:1722830498:") {
				t.Errorf("passwd of the layer: %.200q", pw)
			}
			for _, p := range []string{"home/h-baker/fifo", "home/h-baker/null", "home/h-baker/disk"} {
				if _, ok := got[p]; ok {
					t.Errorf("%s is in the layer", p)
				}
			}
		})
	}
	// Other sessions' tests make ds01 containers too: look only at those
	// of these bases.
	for _, ref := range refs {
		cs, err := d.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("ancestor", ref)})
		if err == nil && len(cs.Items) > 0 {
			t.Errorf("containers of %s left: %d", ref, len(cs.Items))
		}
	}
}
