package gpu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01/internal/limits"
)

// standIn writes a script taking nvidia-smi's arguments: body runs for
// the query, list for -L; each -L call is noted in a file beside it.
func standIn(t *testing.T, query, list string) (cmd, calls string) {
	t.Helper()
	dir := t.TempDir()
	cmd, calls = filepath.Join(dir, "nvidia-smi"), filepath.Join(dir, "calls")
	abs, _ := filepath.Abs("testdata/nvidia-smi")
	script := "#!/bin/sh\nT=" + abs + "\ncase \"$1\" in\n--query-gpu=*) " + query + " ;;\n-L) echo L >>" + calls + "; " + list + " ;;\n*) echo bad args >&2; exit 2 ;;\nesac\n"
	if err := os.WriteFile(cmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return cmd, calls
}

func TestProbe(t *testing.T) {
	const driver = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
	for _, tc := range []struct {
		name, query, list string
		devices, lists    int
		noGPUs, warn, err string
	}{
		{name: "a100x8", query: "cat $T/a100x8.query", list: "exit 1", devices: 8},
		{name: "h100 MIG", query: "cat $T/h100-mig.query", list: "cat $T/h100-mig.L", devices: 11, lists: 1},
		{name: "lost GPU exits 15", query: "cat $T/v100-lost.query; exit 15", devices: 4, warn: "exit status 15"},
		{name: "no devices exits 6", query: "cat $T/no-devices.query; exit 6", noGPUs: "No devices were found"},
		{name: "no driver", query: "echo \"" + driver + "\"; exit 9", noGPUs: "no NVIDIA driver"},
		{name: "fails silently", query: "echo oops >&2; exit 1", err: "oops"},
		{name: "prints garbage", query: "echo hello", err: "line 1"},
		{name: "-L fails", query: "cat $T/h100-mig.query", list: "exit 3", err: "exit status 3", lists: 1},
		{name: "-L garbage", query: "cat $T/h100-mig.query", list: "echo hello", err: "nvidia-smi -L output", lists: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, calls := standIn(t, tc.query, tc.list)
			inv, err := Probe{Command: cmd}.Inventory(context.Background())
			b, _ := os.ReadFile(calls)
			if n := strings.Count(string(b), "L"); n != tc.lists {
				t.Errorf("-L run %d times, want %d", n, tc.lists)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || len(inv.Devices) != tc.devices || !strings.Contains(inv.NoGPUs, tc.noGPUs) || (tc.noGPUs == "") != (inv.NoGPUs == "") {
				t.Fatalf("%+v, %v", inv, err)
			}
			if tc.warn != "" && !strings.Contains(strings.Join(inv.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q, want %q", inv.Warnings, tc.warn)
			}
		})
	}
}

func TestProbeFlood(t *testing.T) {
	cmd, _ := standIn(t, "exec yes '0, GPU-1, T4, 1, [N/A], 0'", "")
	_, err := Probe{Command: cmd}.Inventory(context.Background())
	if !errors.Is(err, limits.ErrLimit) {
		t.Fatalf("endless output: %v", err)
	}
}

func TestProbeNoStack(t *testing.T) {
	for _, c := range []string{"ds01-no-such-nvidia-smi", filepath.Join(t.TempDir(), "nvidia-smi")} {
		inv, err := Probe{Command: c}.Inventory(context.Background())
		if err != nil || !strings.Contains(inv.NoGPUs, "no NVIDIA stack") || !strings.Contains(inv.NoGPUs, c) || len(inv.Devices) != 0 {
			t.Errorf("%s: %+v, %v", c, inv, err)
		}
	}
	if (Probe{}).command() != DefaultCommand {
		t.Error("default command")
	}
}

func TestProbeTimeout(t *testing.T) {
	cmd, _ := standIn(t, "exec sleep 30", "")
	start := time.Now()
	_, err := Probe{Command: cmd, Timeout: 200 * time.Millisecond}.Inventory(context.Background())
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("hanging command: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to give up", d)
	}
}

func TestProbeStderrBounded(t *testing.T) {
	cmd, _ := standIn(t, "yes xxxx | head -c 1000000 >&2; exit 1", "")
	_, err := Probe{Command: cmd}.Inventory(context.Background())
	if err == nil || len(err.Error()) > 5000 || !strings.Contains(err.Error(), "xxxx") {
		t.Fatalf("1 MB on stderr: %d bytes of error", len(err.Error()))
	}
}
