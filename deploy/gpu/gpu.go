// Package gpu is GPU inventory and binding allocation: what GPUs (and MIG
// devices) a server has, as nvidia-smi reports them, who holds which (read
// back from container labels, never a database of its own), and which free
// devices a request gets within the policy's limits. Everything but Probe
// and Lock is pure: values in, values out.
package gpu

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Device is one GPU, or one MIG device on a GPU in MIG mode.
type Device struct {
	// Index is nvidia-smi's: "0" for a GPU, "0:1" for MIG device 1 on
	// GPU 0 (the form the NVIDIA container toolkit takes too).
	Index     string `json:"index"`
	UUID      string `json:"uuid"`                  // GPU-… or MIG-…
	Name      string `json:"name"`                  // the model; a MIG device's adds its profile
	MemoryMiB int64  `json:"memory_mib"`            // 0 when nvidia-smi does not say
	Profile   string `json:"mig_profile,omitempty"` // a MIG device's, e.g. 3g.40gb
	// MIG is true for a GPU in MIG mode (which offers its MIG devices,
	// never itself) and for each MIG device.
	MIG    bool   `json:"mig"`
	Parent string `json:"parent,omitempty"` // a MIG device's GPU, by UUID
	// Utilization is in percent; nil where nvidia-smi gives none (MIG
	// mode, [N/A]).
	Utilization *int `json:"utilization,omitempty"`
	// Err is what nvidia-smi reported wrong with the GPU ([GPU requires
	// reset], ERR!, a handle it could not get); such a device is never
	// granted.
	Err string `json:"error,omitempty"`
}

// IsMIGDevice says whether d is a MIG device rather than a GPU.
func (d Device) IsMIGDevice() bool { return d.Parent != "" }

// Grantable says whether d can go to a container: a MIG device, or a GPU
// not in MIG mode, and not in error.
func (d Device) Grantable() bool {
	return d.Err == "" && d.UUID != "" && (d.IsMIGDevice() || !d.MIG)
}

// Inventory is the devices of one server, GPUs in index order, each GPU's
// MIG devices right after it.
type Inventory struct {
	Devices []Device `json:"devices"`
	// NoGPUs is why there are none, when the NVIDIA stack is missing
	// (no nvidia-smi, no driver, no devices); "" when the inventory ran.
	NoGPUs string `json:"no_gpus,omitempty"`
	// Warnings are what nvidia-smi said besides the devices (a corrupted
	// infoROM, a non-zero exit with output).
	Warnings []string `json:"warnings,omitempty"`
}

// Grantable is every device a request may get, lowest index first.
func (inv Inventory) Grantable() []Device {
	var out []Device
	for _, d := range inv.Devices {
		if d.Grantable() {
			out = append(out, d)
		}
	}
	sortDevices(out)
	return out
}

// Find is the device with index or UUID id.
func (inv Inventory) Find(id string) (Device, bool) {
	for _, d := range inv.Devices {
		if d.UUID != "" && (d.Index == id || d.UUID == id) {
			return d, true
		}
	}
	return Device{}, false
}

// compareIndex orders "0" < "0:0" < "0:1" < "1" < "10", numerically,
// an index that is not numbers last.
func compareIndex(a, b string) int {
	pa, pb := indexParts(a), indexParts(b)
	return slices.Compare(pa, pb)
}

func indexParts(s string) []int {
	if s == "" {
		return []int{1 << 30}
	}
	var out []int
	for _, p := range strings.Split(s, ":") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			n = 1 << 30
		}
		out = append(out, n)
	}
	return out
}

func sortDevices(ds []Device) {
	slices.SortStableFunc(ds, func(a, b Device) int {
		return cmp.Or(compareIndex(a.Index, b.Index), strings.Compare(a.UUID, b.UUID))
	})
}
