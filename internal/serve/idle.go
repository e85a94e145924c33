package serve

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy/gpu"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/audit"
)

// Idle release, as the audit log names it.
const (
	ActionIdleRelease = "idle release"
	RuleIdleRelease   = "idle_release"
)

// IdleIntervalEnv moves the idle check from once a minute (tests). Only
// the service reads it, and it runs as root: the environment is root's.
const IdleIntervalEnv = "DS01_IDLE_INTERVAL"

// maxSamples bounds the utilisation samples kept in memory (about 3 MB):
// 64 devices sampled once a minute for over 17 hours. A rule longer than
// that sees a shorter history, so it releases later, never sooner.
const maxSamples = 1 << 16

// idleInterval is how often the service samples utilisation.
func idleInterval() (time.Duration, error) {
	v := os.Getenv(IdleIntervalEnv)
	if v == "" {
		return time.Minute, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 1m", IdleIntervalEnv, v)
	}
	return d, nil
}

// idleRelease is the policy's idle release: every interval it samples
// the GPUs' utilisation and stops the running containers whose every GPU
// showed 0% for the rule's duration. Samples live in memory only: after a
// restart idle time counts afresh, so a restart can only delay a release.
type idleRelease struct {
	rule      gpu.IdleRule
	every     time.Duration
	inventory func(context.Context) (gpu.Inventory, error)
	held      func(context.Context) ([]gpu.Holding, error)
	release   func(context.Context, gpu.IdleContainer) error
	rec       interface{ Record(audit.Entry) }
	warn      func(string)
	samples   []gpu.Sample
}

func newIdleRelease(after, every time.Duration) *idleRelease {
	// A missed sample or two (a slow nvidia-smi) keeps an idle stretch;
	// a longer gap starts it again, as nothing is known of the time between.
	return &idleRelease{rule: gpu.IdleRule{For: after, MaxGap: 3 * every}, every: every}
}

// run ticks until ctx ends.
func (r *idleRelease) run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.tick(ctx, now)
		}
	}
}

// tick takes one sample and releases what has been idle long enough.
func (r *idleRelease) tick(ctx context.Context, now time.Time) []gpu.IdleContainer {
	inv, err := r.inventory(ctx)
	if err != nil {
		r.warn(fmt.Sprintf("idle release: reading the GPUs: %v", err))
		return nil
	}
	keep := now.Add(-r.rule.For - 2*r.every)
	r.samples = gpu.Keep(append(r.samples, gpu.Samples(inv, now)...), keep, maxSamples)
	hs, err := r.held(ctx)
	if err != nil {
		r.warn(fmt.Sprintf("idle release: %v", err))
		return nil
	}
	idle := gpu.Idle(hs, r.samples, r.rule, now)
	for _, c := range idle {
		start := time.Now()
		e := audit.Entry{Time: start, PID: int32(os.Getpid()), Login: "root", Action: ActionIdleRelease, Target: c.Container, Decision: audit.Allow, Rule: RuleIdleRelease}
		if err := r.release(ctx, c); err != nil {
			e.Decision = audit.Error
			r.warn(fmt.Sprintf("idle release of %s: %v", c.Container, err))
		}
		e.Duration = time.Since(start)
		r.rec.Record(e)
	}
	return idle
}

// idleDocker is what releasing a container takes of the daemon.
type idleDocker interface {
	Exec(ctx context.Context, id, user string, cmd ...string) (engine.RunResult, error)
	ContainerStop(ctx context.Context, id string, o client.ContainerStopOptions) (client.ContainerStopResult, error)
}

// noticeScript writes $1 on every terminal of the container: PID 1's (a
// container ds01 deploys has a TTY, which docker attach and docker logs
// show) and every shell's opened with container open (docker exec -it),
// all of them ptys of the container's own /dev/pts.
const noticeScript = `n=0; for t in /dev/pts/[0-9]*; do [ -c "$t" ] && printf '\r\n%s\r\n' "$1" >"$t" 2>/dev/null && n=$((n+1)); done; [ "$n" -gt 0 ] || printf '%s\n' "$1" >/proc/1/fd/1`

// releaser stops an idle container after telling its user why and how
// to get GPUs again. A notice that cannot be written (no sh in the
// image) does not keep the GPUs held.
func releaser(d idleDocker, after time.Duration, warn func(string)) func(context.Context, gpu.IdleContainer) error {
	return func(ctx context.Context, c gpu.IdleContainer) error {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := d.Exec(nctx, c.ContainerID, "0", "sh", "-c", noticeScript, "sh", notice(c, after))
		cancel()
		if err != nil || res.ExitCode != 0 {
			warn(fmt.Sprintf("idle release: the notice to %s was not written (%v, exit %d)", c.Container, err, res.ExitCode))
		}
		grace := 10
		if _, err := d.ContainerStop(ctx, c.ContainerID, client.ContainerStopOptions{Timeout: &grace}); err != nil {
			return fmt.Errorf("stopping %s: %w", c.Container, err)
		}
		return nil
	}
}

// notice is the message on the container's terminals.
func notice(c gpu.IdleContainer, after time.Duration) string {
	name, _, _ := strings.Cut(c.Container, "._.")
	return fmt.Sprintf("ds01: stopping this container now: its GPUs (%s) have shown no use since %s, for longer than this server's idle_release of %s, so they go back to other users. Files in /workspace are kept. To get GPUs again: \"ds01 container open %s\" starts it again if its GPUs are still free; otherwise \"ds01 container retire %s\" (--save keeps your changes) and \"ds01 container deploy %s --gpus N\".",
		strings.Join(c.UUIDs, " "), c.Since.UTC().Format(time.RFC3339), after, name, name, name)
}

// idleLoop runs the policy's idle release with the service's inventory,
// holdings (held while running, as idle release implies) and audit log.
func idleLoop(ctx context.Context, o *ops.Ops, log *audit.Log, after, every time.Duration) {
	warn := func(s string) { fmt.Fprintln(os.Stderr, "ds01 serve:", s) }
	r := newIdleRelease(after, every)
	r.inventory, r.rec, r.warn = o.GPU.Inventory, log, warn
	r.held = func(ctx context.Context) ([]gpu.Holding, error) {
		hs, bad, err := gpu.ReadHoldings(ctx, o.D, true)
		for _, b := range bad {
			warn(fmt.Sprintf("idle release: GPUs unknown: %v", b))
		}
		return hs, err
	}
	r.release = releaser(o.D, after, warn)
	r.run(ctx)
}
