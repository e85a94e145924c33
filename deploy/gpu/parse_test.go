package gpu

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ds01/ds01/internal/limits"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/nvidia-smi")

// recorded parses one recorded server: NAME.query and, if there is one,
// NAME.L, merged.
func recorded(t testing.TB, name string) Inventory {
	t.Helper()
	q, err := os.ReadFile(filepath.Join("testdata/nvidia-smi", name+".query"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	l, err := os.ReadFile(filepath.Join("testdata/nvidia-smi", name+".L"))
	if errors.Is(err, os.ErrNotExist) {
		return inv
	}
	list, err := ParseList(l)
	if err != nil {
		t.Fatal(err)
	}
	inv, err = Merge(inv, list)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestRecordedGolden(t *testing.T) {
	qs, _ := filepath.Glob("testdata/nvidia-smi/*.query")
	if len(qs) < 6 {
		t.Fatalf("only %d recorded outputs", len(qs))
	}
	for _, q := range qs {
		name := strings.TrimSuffix(filepath.Base(q), ".query")
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(recorded(t, name), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata/nvidia-smi", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(want), got) {
				t.Errorf("parsed %s differs from %s:\n%s", name, golden, got)
			}
		})
	}
}

// The facts the goldens hold, checked by what they mean.
func TestRecordedFacts(t *testing.T) {
	a100 := recorded(t, "a100x8")
	if g := a100.Grantable(); len(g) != 8 || g[0].Index != "0" || g[7].Index != "7" || g[1].MemoryMiB != 81920 || *g[1].Utilization != 100 {
		t.Errorf("a100x8: %+v", g)
	}
	h100 := recorded(t, "h100-mig")
	var idx []string
	for _, d := range h100.Grantable() {
		idx = append(idx, d.Index)
	}
	if strings.Join(idx, " ") != "0:0 0:1 0:2 0:3 1 2:0 2:1 2:2 3" {
		t.Errorf("h100-mig grantable: %v", idx)
	}
	if d, _ := h100.Find("2:1"); d.Profile != "1g.10gb+me" || d.Parent != h100.Devices[6].UUID || !strings.HasPrefix(d.UUID, "MIG-") || d.Name != "NVIDIA H100 80GB HBM3 MIG 1g.10gb+me" {
		t.Errorf("h100-mig 2:1: %+v", d)
	}
	r470 := recorded(t, "a100-mig-r470")
	if d, ok := r470.Find("0:1"); !ok || !strings.HasSuffix(d.UUID, "/2/0") {
		t.Errorf("r470 MIG UUID form: %+v", d)
	}
	reset := recorded(t, "a6000-reset")
	if d, _ := reset.Find("2"); d.Err != "memory.total: GPU requires reset; utilization.gpu: GPU requires reset" || d.Grantable() || len(reset.Grantable()) != 3 {
		t.Errorf("a6000-reset: %+v", d)
	}
	lost := recorded(t, "v100-lost")
	if len(lost.Devices) != 4 || len(lost.Warnings) != 1 || !strings.HasPrefix(lost.Devices[2].Err, handleErr) || len(lost.Grantable()) != 2 {
		t.Errorf("v100-lost: %+v", lost)
	}
	crlf := recorded(t, "rtx3090-crlf")
	if len(crlf.Devices) != 2 || crlf.Devices[1].Name != "NVIDIA GeForce RTX 3090" || crlf.Devices[1].MIG || *crlf.Devices[1].Utilization != 0 {
		t.Errorf("rtx3090-crlf: %+v", crlf)
	}
	if none := recorded(t, "no-devices"); none.NoGPUs == "" || len(none.Devices) != 0 {
		t.Errorf("no-devices: %+v", none)
	}
}

func TestParseQueryLines(t *testing.T) {
	const u = "GPU-12345678-1234-1234-1234-123456789abc"
	for _, tc := range []struct {
		line, err string
		check     func(Device) bool
	}{
		{"0, " + u + ", Tesla T4, 15360, [N/A], 5", "", func(d Device) bool { return d.MemoryMiB == 15360 && *d.Utilization == 5 && !d.MIG }},
		{"0, " + u + ", Tesla T4, 15360, [N/A]", "", func(d Device) bool { return d.Utilization == nil }},
		{"0, " + u + ", Tesla T4, [Not Supported], Disabled, [N/A]", "", func(d Device) bool { return d.MemoryMiB == 0 && d.Err == "" }},
		{"1, " + u + ", [N/A], 100, Enabled, [N/A]", "", func(d Device) bool { return d.MIG && d.Name == "" && !d.Grantable() }},
		{"0, [Unknown Error], Tesla T4, 15360, [N/A], 0", "", func(d Device) bool { return d.Err == "uuid: Unknown Error" && !d.Grantable() }},
		{"0, " + u + ", Tesla T4, 15360, ERR!, 0", "", func(d Device) bool { return d.Err == "mig.mode.current: ERR!" }},
		{"0, " + u + ", Tesla T4, ERR!, [N/A], [Insufficient Permissions]", "", func(d Device) bool { return d.Err == "memory.total: ERR!" && d.Utilization == nil }},
		{"x, " + u + ", T4, 1, [N/A], 0", "index", nil},
		{"01, " + u + ", T4, 1, [N/A], 0", "index", nil},
		{"0, GPU0, T4, 1, [N/A], 0", "uuid", nil},
		{"0, MIG-1234, T4, 1, [N/A], 0", "uuid", nil},
		{"0, " + u + ", T4, -1, [N/A], 0", "memory", nil},
		{"0, " + u + ", T4, 1, Pending, 0", "mig.mode", nil},
		{"0, " + u + ", T4, 1, [N/A], 101", "utilization", nil},
		{"0, " + u + ", T4, 1, [N/A], 0, 7", "fields", nil},
		{"NVIDIA-SMI has failed", "fields", nil},
	} {
		inv, err := ParseQuery([]byte(tc.line + "\n"))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one about %s", tc.line, err, tc.err)
			}
			continue
		}
		if err != nil || len(inv.Devices) != 1 || !tc.check(inv.Devices[0]) {
			t.Errorf("%q: %+v, %v", tc.line, inv.Devices, err)
		}
	}
}

func TestParseRefusesDuplicatesAndContradictions(t *testing.T) {
	const u = "GPU-12345678-1234-1234-1234-123456789abc"
	for _, out := range []string{
		"0, " + u + ", T4, 1, [N/A], 0\n1, " + u + ", T4, 1, [N/A], 0\n",
		"0, " + u + ", T4, 1, [N/A], 0\n0, GPU-1, T4, 1, [N/A], 0\n",
		"No devices were found\n0, " + u + ", T4, 1, [N/A], 0\n",
	} {
		if _, err := ParseQuery([]byte(out)); err == nil {
			t.Errorf("%q: no error", out)
		}
	}
	for _, out := range []string{
		"  MIG 1g.5gb Device 0: (UUID: MIG-1)\n",
		"GPU 0: T4 (UUID: MIG-1)\n",
		"GPU 0: A100 (UUID: GPU-1)\n  MIG 1g.5gb Device 0: (UUID: GPU-2)\n",
		"GPU 0: A100 (UUID: GPU-1)\nGPU 0: A100 (UUID: GPU-2)\n",
		"GPU 0: A100 (UUID: GPU-1)\n  MIG 1g.5gb Device 0: (UUID: MIG-1)\n  MIG 1g.5gb Device 0: (UUID: MIG-2)\n",
		"GPU 0: A100\n",
	} {
		if _, err := ParseList([]byte(out)); err == nil {
			t.Errorf("-L %q: no error", out)
		}
	}
}

func TestMergeDisagreements(t *testing.T) {
	q, _ := ParseQuery([]byte("0, GPU-1, A100, 40536, Disabled, 0\n"))
	for _, l := range []string{
		"GPU 0: A100 (UUID: GPU-1)\n  MIG 1g.5gb Device 0: (UUID: MIG-1)\n",
		"GPU 0: A100 (UUID: GPU-2)\n  MIG 1g.5gb Device 0: (UUID: MIG-1)\n",
	} {
		list, err := ParseList([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Merge(q, list); err == nil {
			t.Errorf("merge of %q: no error", l)
		}
	}
}

func TestParseBounded(t *testing.T) {
	line := "0, GPU-1, T4, 1, [N/A], 0\n"
	big := bytes.Repeat([]byte(line), int(outputLimit.Max)/len(line)+1)
	if _, err := ParseQuery(big); !errors.Is(err, limits.ErrLimit) {
		t.Errorf("output over the size limit: %v", err)
	}
	many := bytes.Repeat([]byte("WARNING: x\n"), int(lineLimit.Max)+1)
	if _, err := ParseQuery(many); !errors.Is(err, limits.ErrLimit) {
		t.Errorf("output over the line limit: %v", err)
	}
	if _, err := ParseList(many); !errors.Is(err, limits.ErrLimit) {
		t.Errorf("-L output over the line limit: %v", err)
	}
}

func FuzzParseQuery(f *testing.F) {
	qs, _ := filepath.Glob("testdata/nvidia-smi/*.query")
	for _, q := range qs {
		b, _ := os.ReadFile(q)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, err := ParseQuery(b)
		if err != nil {
			return
		}
		if checkUnique(inv.Devices) != nil {
			t.Fatalf("duplicates accepted: %+v", inv.Devices)
		}
		for _, d := range inv.Grantable() {
			if !uuidRE.MatchString(d.UUID) || !indexRE.MatchString(d.Index) {
				t.Fatalf("grantable device with index %q UUID %q", d.Index, d.UUID)
			}
		}
	})
}

func FuzzParseList(f *testing.F) {
	ls, _ := filepath.Glob("testdata/nvidia-smi/*.L")
	for _, l := range ls {
		b, _ := os.ReadFile(l)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ParseList(b)
		if err != nil {
			return
		}
		for _, d := range ds {
			if d.IsMIGDevice() && (!strings.HasPrefix(d.UUID, "MIG-") || !strings.Contains(d.Index, ":")) {
				t.Fatalf("MIG device %+v", d)
			}
		}
	})
}
