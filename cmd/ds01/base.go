package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/urfave/cli/v3"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/api"
	"github.com/ds01/ds01/internal/termsafe"
	"github.com/ds01/ds01/registry"
)

func parsePlatform(s string) (*v1.Platform, error) {
	if s == "" {
		return nil, nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return nil, usagef("--platform %q: give os/arch[/variant], e.g. linux/amd64", s)
	}
	return p, nil
}

func runBasePull(ctx context.Context, cmd *cli.Command) error {
	ref, err := oneArg(cmd, "REF")
	if err != nil {
		return err
	}
	if _, err := registry.ParseRef(ref); err != nil {
		return usageError{err}
	}
	platform, err := parsePlatform(cmd.String("platform"))
	if err != nil {
		return err
	}
	id, err := caller(cmd)
	if err != nil {
		return err
	}
	o, err := cacheOps(cmd)
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	r := ops.BasePull{Ref: ref, Platform: platform}
	var bars *pullBars
	if !cmd.Bool("quiet") && isTerminalWriter(out) {
		bars = newPullBars(ctx, out)
		r.Events = bars.event
	}
	t := time.Now()
	res, err := o.PullBase(ctx, id, r)
	if bars != nil {
		bars.wait(err != nil)
	}
	if err != nil || cmd.Bool("quiet") {
		return err
	}
	el := time.Since(t)
	fmt.Fprintf(out, "%s  %s  %s, %d layers, %s; fetched %s (%s/s), %d layers already cached", ref, res.Digest, res.Platform, res.Layers,
		humanSize(res.Size), humanSize(res.Fetched), humanSize(int64(float64(res.Fetched)/el.Seconds())), res.Reused)
	if res.Refetched > 0 {
		fmt.Fprintf(out, ", %d corrupt in the cache and fetched again", res.Refetched)
	}
	fmt.Fprintf(out, "; %s\n", el.Round(time.Millisecond))
	return nil
}

// pullBars draws a bar per layer on a terminal.
type pullBars struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[v1.Hash]*mpb.Bar
}

func newPullBars(ctx context.Context, w io.Writer) *pullBars {
	return &pullBars{p: mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(40)), bars: map[v1.Hash]*mpb.Bar{}}
}

func (b *pullBars) event(e registry.PullEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.Kind == "layers" {
		for _, l := range e.Layers {
			b.bars[l.Digest] = b.p.AddBar(l.Size,
				mpb.PrependDecorators(decor.Name(l.Digest.Hex[:12]+" "), decor.CountersKibiByte("% .1f / % .1f")),
				mpb.AppendDecorators(decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30), decor.Name(" "), decor.Percentage()))
		}
		return
	}
	bar := b.bars[e.Layer]
	if bar == nil {
		return
	}
	switch e.Kind {
	case "reused":
		bar.SetTotal(e.Size, true)
	case "bytes":
		bar.EwmaIncrInt64(e.N, 10*time.Millisecond)
	case "done":
		bar.SetTotal(-1, true)
	}
}

func (b *pullBars) wait(failed bool) {
	if failed {
		for _, bar := range b.bars {
			bar.Abort(false)
		}
	}
	b.p.Wait()
}

func runBaseList(ctx context.Context, cmd *cli.Command) error {
	o, err := cacheOps(cmd)
	if err != nil {
		return err
	}
	es, err := o.ListBases()
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	if cmd.Bool("json") {
		return writeJSON(out, es)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tDIGEST\tPLATFORM\tSIZE\tLAST USED")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", termsafe.Line(e.Ref), termsafe.Line(shortID(e.Digest)), termsafe.Line(e.Platform), humanSize(e.Size), e.LastUsed.Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

func runBasePrune(ctx context.Context, cmd *cli.Command) error {
	id, err := caller(cmd)
	if err != nil {
		return err
	}
	o, err := newOps(nil)
	if err != nil {
		return err
	}
	res, err := o.PruneBases(id, cmd.Bool("dry-run"))
	if err != nil {
		return err
	}
	verb := "removed"
	if cmd.Bool("dry-run") {
		verb = "would remove"
	}
	out := cmd.Root().Writer
	tmp := 0
	for _, b := range res.Blobs {
		if strings.HasPrefix(b, ".tmp-") {
			tmp++
		}
		fmt.Fprintf(out, "  %s\n", strings.TrimPrefix(b, ".tmp-"))
	}
	fmt.Fprintf(out, "%s %d unused blobs and %d temporary files of interrupted pulls from ds01's cache: %s %s\n",
		verb, len(res.Blobs)-tmp, tmp, map[bool]string{true: "would free", false: "freed"}[cmd.Bool("dry-run")], humanSize(res.Bytes))
	fmt.Fprintln(out, "(package images in the Docker daemon, ds01-packages/…, are pruned by ds01 image prune)")
	return nil
}

// loadProgress prints, on a terminal, one line that follows a base being
// streamed into the daemon; done ends the line.
func loadProgress(w io.Writer) (fn func(total, n int64), done func()) {
	if !isTerminalWriter(w) {
		return nil, func() {}
	}
	var mu sync.Mutex
	var sent int64
	var last time.Time
	started := false
	start := time.Now()
	fn = func(total, n int64) {
		mu.Lock()
		defer mu.Unlock()
		started = true
		sent += n
		if time.Since(last) < 100*time.Millisecond && sent < total {
			return
		}
		last = time.Now()
		rate := float64(sent) / time.Since(start).Seconds()
		fmt.Fprintf(w, "\rstreaming the base into the daemon, once: %s / %s (%s/s)   ", humanSize(sent), humanSize(total), humanSize(int64(rate)))
	}
	done = func() {
		mu.Lock()
		defer mu.Unlock()
		if started {
			fmt.Fprintln(w)
		}
	}
	return fn, done
}

// cacheOps are the operations on ds01's cache alone (no engine needed
// directly), here or through the service.
func cacheOps(cmd *cli.Command) (ops.Operations, error) {
	l, err := chooseLink(cmd)
	if err != nil {
		return nil, err
	}
	if l.socket != "" {
		return api.NewClient(l.socket, overrides(cmd), cmd.Bool("verbose")), nil
	}
	return newOps(nil)
}
