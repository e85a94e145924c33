package gpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/ds01/ds01/internal/limits"
)

// QueryArgs are the arguments of the inventory's first call; a stand-in
// command gets exactly these.
var QueryArgs = []string{"--query-gpu=index,uuid,name,memory.total,mig.mode.current,utilization.gpu", "--format=csv,noheader,nounits"}

// ListArgs list MIG devices, run only when a GPU is in MIG mode.
var ListArgs = []string{"-L"}

var (
	// outputLimit bounds what one nvidia-smi call may print: a GPU is
	// one line of ~120 bytes, and a server has at most a few dozen GPUs
	// with seven MIG devices each.
	outputLimit = limits.Limit{Name: "nvidia-smi output size", Max: 1 << 20, Unit: "bytes", Why: "a server's GPUs and MIG devices are a few kB of text"}
	// lineLimit bounds the lines of one call, the number of devices.
	lineLimit = limits.Limit{Name: "nvidia-smi output lines", Max: 4096, Unit: "lines", Why: "a server has at most a few hundred GPUs and MIG devices"}
)

// noDevices is what nvidia-smi prints, exiting 6, where the driver sees
// no GPU.
const noDevices = "No devices were found"

// handleErr starts the line nvidia-smi prints for a GPU it cannot reach
// (fallen off the bus, Xid 79) instead of its fields.
const handleErr = "Unable to determine the device handle for"

// lines splits out into lines without CR or blanks, within the limits.
func lines(input string, out []byte) ([]string, error) {
	if err := outputLimit.Check(input, int64(len(out))); err != nil {
		return nil, err
	}
	var ls []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, int(outputLimit.Max)+1)
	for sc.Scan() {
		l := strings.TrimSpace(strings.TrimRight(sc.Text(), "\r"))
		if l == "" {
			continue
		}
		if len(ls) == int(lineLimit.Max) {
			return nil, &limits.Error{Limit: lineLimit, Input: input, Got: -1}
		}
		ls = append(ls, l)
	}
	return ls, sc.Err()
}

// ParseQuery reads the output of nvidia-smi QueryArgs (the fifth
// field alone, without utilization, is read too). A GPU whose fields say
// it is in error is kept, with Err set; a line that is neither a GPU nor
// a message nvidia-smi is known to print is an error.
func ParseQuery(out []byte) (Inventory, error) {
	ls, err := lines("nvidia-smi --query-gpu output", out)
	if err != nil {
		return Inventory{}, err
	}
	var inv Inventory
	for n, l := range ls {
		switch {
		case l == noDevices:
			inv.NoGPUs = "nvidia-smi: " + noDevices
		case strings.HasPrefix(l, handleErr):
			inv.Devices = append(inv.Devices, Device{Err: l})
		case strings.HasPrefix(l, "WARNING"):
			inv.Warnings = append(inv.Warnings, l)
		default:
			d, err := parseQueryLine(l)
			if err != nil {
				return Inventory{}, fmt.Errorf("nvidia-smi --query-gpu output, line %d %q: %w", n+1, clip(l), err)
			}
			inv.Devices = append(inv.Devices, d)
		}
	}
	if inv.NoGPUs != "" && len(inv.Devices) > 0 {
		return Inventory{}, fmt.Errorf("nvidia-smi --query-gpu output lists GPUs and says %q", noDevices)
	}
	return inv, checkUnique(inv.Devices)
}

// clip shortens a line for a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func parseQueryLine(l string) (Device, error) {
	f := strings.Split(l, ",")
	if len(f) != 5 && len(f) != 6 {
		return Device{}, fmt.Errorf("%d fields, want 6 (index, uuid, name, memory.total, mig.mode.current, utilization.gpu)", len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	var d Device
	var errs []string
	bad := func(field, v string) { errs = append(errs, field+": "+strings.Trim(v, "[]")) }
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 0 || f[0] != strconv.Itoa(n) {
		return Device{}, fmt.Errorf("index %q is not a number", f[0])
	}
	d.Index = f[0]
	switch k := kind(f[1]); {
	case k == value && uuidRE.MatchString(f[1]) && strings.HasPrefix(f[1], "GPU-"):
		d.UUID = f[1]
	case k == failed:
		bad("uuid", f[1])
	default:
		return Device{}, fmt.Errorf("uuid %q is not a GPU UUID", f[1])
	}
	if kind(f[2]) == value {
		d.Name = f[2]
	}
	d.MemoryMiB, err = number(f[3], 1<<40, func() { bad("memory.total", f[3]) })
	if err != nil {
		return Device{}, fmt.Errorf("memory.total: %w", err)
	}
	d.MIG, err = migMode(f[4], func() { bad("mig.mode.current", f[4]) })
	if err != nil {
		return Device{}, err
	}
	if len(f) == 6 && kind(f[5]) == value {
		u, err := number(f[5], 100, nil)
		if err != nil {
			return Device{}, fmt.Errorf("utilization.gpu: %w", err)
		}
		d.Utilization = ptr(int(u))
	} else if len(f) == 6 && kind(f[5]) == failed {
		bad("utilization.gpu", f[5])
	}
	d.Err = strings.Join(errs, "; ")
	return d, nil
}

func ptr[T any](v T) *T { return &v }

// What a field holds: a value, nothing ([N/A], [Not Supported]), or an
// error nvidia-smi reports in its place.
type fieldKind int

const (
	value fieldKind = iota
	absent
	failed
)

func kind(v string) fieldKind {
	switch {
	case v == "[N/A]" || v == "N/A" || v == "[Not Supported]" || v == "[Insufficient Permissions]" || v == "":
		return absent
	case v == "ERR!" || strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]"):
		return failed
	}
	return value
}

// number reads a field of whole numbers up to max: 0 when absent, 0 and
// onFail when failed.
func number(v string, max int64, onFail func()) (int64, error) {
	switch kind(v) {
	case absent:
		return 0, nil
	case failed:
		if onFail != nil {
			onFail()
		}
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > max {
		return 0, fmt.Errorf("%q is not a number from 0 to %d", v, max)
	}
	return n, nil
}

func migMode(v string, onFail func()) (bool, error) {
	switch {
	case v == "Enabled":
		return true, nil
	case v == "Disabled" || kind(v) == absent:
		return false, nil
	case kind(v) == failed:
		onFail()
		return false, nil
	}
	return false, fmt.Errorf("mig.mode.current %q is neither Enabled nor Disabled", v)
}

// uuidRE is what a GPU or MIG UUID may hold: GPU-8-4-4-4-12 hex, MIG-…
// of the same form, or the R450–R470 form MIG-GPU-…/GI/CI.
var uuidRE = regexp.MustCompile(`^(GPU|MIG)-[0-9A-Za-z][0-9A-Za-z/-]{0,99}$`)

var (
	listGPURE = regexp.MustCompile(`^GPU (\d+): (.*) \(UUID: ([^()]+)\)$`)
	listMIGRE = regexp.MustCompile(`^MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^()]+)\)$`)
)

// ParseList reads the output of nvidia-smi -L: each GPU, and under a GPU
// in MIG mode its MIG devices, as devices with Parent and Index "GPU:N".
// Only index, UUID, name, profile and parent are known from it.
func ParseList(out []byte) ([]Device, error) {
	ls, err := lines("nvidia-smi -L output", out)
	if err != nil {
		return nil, err
	}
	var ds []Device
	gpu := -1 // the GPU the lines below belong to, in ds
	for n, l := range ls {
		if l == noDevices || strings.HasPrefix(l, handleErr) || strings.HasPrefix(l, "WARNING") {
			gpu = -1
			continue
		}
		var parent *Device
		if gpu >= 0 {
			parent = &ds[gpu]
		}
		d, err := parseListLine(l, parent)
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi -L output, line %d %q: %w", n+1, clip(l), err)
		}
		ds = append(ds, d)
		if !d.IsMIGDevice() {
			gpu = len(ds) - 1
		}
	}
	return ds, checkUnique(ds)
}

func parseListLine(l string, gpu *Device) (Device, error) {
	if m := listGPURE.FindStringSubmatch(l); m != nil {
		if !uuidRE.MatchString(m[3]) || !strings.HasPrefix(m[3], "GPU-") {
			return Device{}, fmt.Errorf("%q is not a GPU UUID", m[3])
		}
		return Device{Index: m[1], Name: m[2], UUID: m[3]}, nil
	}
	m := listMIGRE.FindStringSubmatch(l)
	if m == nil {
		return Device{}, errors.New("neither a GPU nor a MIG device")
	}
	if gpu == nil {
		return Device{}, errors.New("a MIG device under no GPU")
	}
	if !uuidRE.MatchString(m[3]) || !strings.HasPrefix(m[3], "MIG-") {
		return Device{}, fmt.Errorf("%q is not a MIG UUID", m[3])
	}
	gpu.MIG = true
	return Device{Index: gpu.Index + ":" + m[2], UUID: m[3], Name: gpu.Name + " MIG " + m[1], Profile: m[1], MIG: true, Parent: gpu.UUID}, nil
}

// checkUnique refuses two devices with one index or UUID: an allocation
// by either must be unambiguous.
func checkUnique(ds []Device) error {
	seen := map[string]bool{}
	for _, d := range ds {
		for _, k := range []string{"i" + d.Index, "u" + d.UUID} {
			if len(k) == 1 {
				continue
			}
			if seen[k] {
				return fmt.Errorf("nvidia-smi lists %s twice", k[1:])
			}
			seen[k] = true
		}
	}
	return nil
}

// Merge puts the MIG devices of list (ParseList) under the GPUs of inv
// (ParseQuery) that are in MIG mode; list's GPUs themselves add nothing.
// A MIG device whose GPU inv lacks, or lists as not in MIG mode, is an
// error: the two calls disagree.
func Merge(inv Inventory, list []Device) (Inventory, error) {
	byParent := map[string][]Device{}
	for _, d := range list {
		if d.IsMIGDevice() {
			byParent[d.Parent] = append(byParent[d.Parent], d)
		}
	}
	out := inv
	out.Devices = nil
	for _, g := range inv.Devices {
		out.Devices = append(out.Devices, g)
		migs := byParent[g.UUID]
		delete(byParent, g.UUID)
		if len(migs) > 0 && !g.MIG {
			return Inventory{}, fmt.Errorf("nvidia-smi -L lists MIG devices on GPU %s, which --query-gpu says is not in MIG mode", g.Index)
		}
		for _, m := range migs {
			m.Name = g.Name + " MIG " + m.Profile
			m.Index = g.Index + m.Index[strings.Index(m.Index, ":"):]
			out.Devices = append(out.Devices, m)
		}
	}
	for p := range byParent {
		return Inventory{}, fmt.Errorf("nvidia-smi -L lists MIG devices on %s, which --query-gpu does not list", p)
	}
	return out, checkUnique(out.Devices)
}
