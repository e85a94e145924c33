package gpu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"time"
)

// DefaultCommand is the inventory command unless the policy names another
// (a stand-in script taking nvidia-smi's arguments, as tests use).
const DefaultCommand = "nvidia-smi"

// DefaultTimeout bounds one call: nvidia-smi answers in well under a
// second, but hangs for minutes on a GPU that is wedged.
const DefaultTimeout = 20 * time.Second

// Probe reads the inventory by running Command (DefaultCommand if empty)
// with QueryArgs and, when a GPU is in MIG mode, ListArgs.
type Probe struct {
	Command string
	Timeout time.Duration // per call; DefaultTimeout if zero
}

// driverDown is how nvidia-smi says the driver is not there (exit 9).
const driverDown = "couldn't communicate with the NVIDIA driver"

// Inventory runs the probe. A machine without the NVIDIA stack (no
// command, no driver, no device) is an Inventory with NoGPUs saying why,
// not an error; an error is a command that misbehaves (times out, prints
// what no nvidia-smi prints, or too much).
func (p Probe) Inventory(ctx context.Context) (Inventory, error) {
	out, err := p.run(ctx, QueryArgs)
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return Inventory{NoGPUs: fmt.Sprintf("no NVIDIA stack: %s not found", p.command())}, nil
	}
	if down := driverMessage(out, err); down != "" {
		return Inventory{NoGPUs: down}, nil
	}
	inv, perr := ParseQuery(out)
	if perr != nil {
		return Inventory{}, errors.Join(perr, err)
	}
	if err != nil {
		if len(inv.Devices) == 0 && inv.NoGPUs == "" {
			return Inventory{}, err
		}
		if inv.NoGPUs == "" {
			inv.Warnings = append(inv.Warnings, err.Error())
		}
	}
	if !anyMIG(inv) {
		return inv, nil
	}
	out, err = p.run(ctx, ListArgs)
	if err != nil {
		return Inventory{}, err
	}
	list, err := ParseList(out)
	if err != nil {
		return Inventory{}, err
	}
	return Merge(inv, list)
}

func (p Probe) command() string {
	if p.Command == "" {
		return DefaultCommand
	}
	return p.Command
}

func anyMIG(inv Inventory) bool {
	for _, d := range inv.Devices {
		if d.MIG {
			return true
		}
	}
	return false
}

// driverMessage is NoGPUs for output saying the driver is not loaded,
// which nvidia-smi prints when only the user-space tools are installed.
func driverMessage(out []byte, err error) string {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return ""
	}
	msg := string(out) + " " + err.Error()
	if !strings.Contains(msg, driverDown) {
		return ""
	}
	return "no NVIDIA driver: nvidia-smi " + driverDown
}

// run is one call: stdout within outputLimit, stderr's start kept for
// the error, killed at the timeout.
func (p Probe) run(ctx context.Context, args []string) ([]byte, error) {
	t := p.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	name := p.command() + " " + strings.Join(args, " ")
	cmd := exec.CommandContext(ctx, p.command(), args...)
	stderr := &head{max: 4096}
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", name, err)
	}
	out, rerr := outputLimit.ReadAll(name, pipe)
	if rerr != nil {
		cmd.Process.Kill()
	}
	werr := cmd.Wait()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return nil, fmt.Errorf("%s did not answer within %s (a wedged GPU?): %w", name, t, ctx.Err())
	case rerr != nil:
		return nil, rerr
	case werr != nil:
		return out, fmt.Errorf("%s: %w: %s", name, werr, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// head keeps the first max bytes written to it and drops the rest. The
// buffer is a field, not embedded: its ReadFrom would be promoted, and
// os/exec's io.Copy would use it and never stop.
type head struct {
	buf bytes.Buffer
	max int
}

func (h *head) Write(p []byte) (int, error) {
	if room := h.max - h.buf.Len(); room > 0 {
		h.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (h *head) String() string { return h.buf.String() }
