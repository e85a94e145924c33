package gpu

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ds01/ds01/internal/termsafe"
)

// Row states.
const (
	StateFree  = "free"
	StateHeld  = "held"
	StateError = "error"
	StateMIG   = "mig"  // a GPU in MIG mode: its MIG devices are the rows after it
	StateGone  = "gone" // held by a container, but not in the inventory
)

// Row is one line of ds01 gpu list: a device and who holds it. A device
// two containers claim (which ds01 never grants) has a row for each.
type Row struct {
	Index       string     `json:"index"`
	UUID        string     `json:"uuid"`
	Model       string     `json:"model"`
	MemoryMiB   int64      `json:"memory_mib,omitempty"`
	State       string     `json:"state"`
	Login       string     `json:"login,omitempty"`
	UID         *uint32    `json:"uid,omitempty"`
	Container   string     `json:"container,omitempty"`
	ContainerID string     `json:"container_id,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	Utilization *int       `json:"utilization,omitempty"`
	Error       string     `json:"error,omitempty"`
}

// View joins the inventory and the holdings, in the inventory's order,
// held devices the inventory lacks last.
func View(inv Inventory, held []Holding) []Row {
	by := map[string][]Holding{}
	for _, h := range held {
		by[h.UUID] = append(by[h.UUID], h)
	}
	var rows []Row
	for _, d := range inv.Devices {
		r := Row{Index: d.Index, UUID: d.UUID, Model: d.Name, MemoryMiB: d.MemoryMiB, Utilization: d.Utilization, Error: d.Err, State: StateFree}
		switch {
		case d.Err != "":
			r.State = StateError
		case d.MIG && !d.IsMIGDevice():
			r.State = StateMIG
		}
		hs := by[d.UUID]
		delete(by, d.UUID)
		rows = append(rows, withHolders(r, hs)...)
	}
	var gone []Holding
	for _, hs := range by {
		gone = append(gone, hs...)
	}
	slices.SortFunc(gone, func(a, b Holding) int { return compareIndex(a.Index, b.Index) })
	for _, h := range gone {
		rows = append(rows, withHolders(Row{Index: h.Index, UUID: h.UUID, State: StateGone}, []Holding{h})...)
	}
	return rows
}

// withHolders is r once per holding, or once free.
func withHolders(r Row, hs []Holding) []Row {
	if len(hs) == 0 {
		return []Row{r}
	}
	var out []Row
	for _, h := range hs {
		row := r
		if row.State == StateFree {
			row.State = StateHeld
		}
		row.Login, row.UID, row.Container, row.ContainerID, row.Since = h.Login, &h.UID, h.Container, h.ContainerID, &h.Since
		out = append(out, row)
	}
	return out
}

// WriteJSON writes the view as JSON: the rows, and why there are no GPUs
// or what nvidia-smi warned of.
func WriteJSON(w io.Writer, inv Inventory, rows []Row) error {
	if rows == nil {
		rows = []Row{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		GPUs     []Row    `json:"gpus"`
		NoGPUs   string   `json:"no_gpus,omitempty"`
		Warnings []string `json:"warnings,omitempty"`
	}{rows, inv.NoGPUs, inv.Warnings})
}

// WriteTable writes the view for a terminal; what users or nvidia-smi
// wrote is escaped.
func WriteTable(w io.Writer, inv Inventory, rows []Row) error {
	if inv.NoGPUs != "" && len(rows) == 0 {
		_, err := fmt.Fprintf(w, "no GPUs: %s\n", termsafe.Line(inv.NoGPUs))
		return err
	}
	l := termsafe.Line
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tUUID\tMODEL\tMEMORY\tSTATE\tHOLDER\tCONTAINER\tSINCE\tUTIL")
	for _, r := range rows {
		state := r.State
		if r.Error != "" {
			state += " (" + r.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(l(r.Index)), orDash(l(r.UUID)), orDash(l(r.Model)), memory(r.MemoryMiB), l(state), holder(r), orDash(l(r.Container)), since(r.Since), util(r.Utilization))
	}
	for _, warn := range inv.Warnings {
		fmt.Fprintf(tw, "warning: %s\n", l(warn))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func memory(mib int64) string {
	if mib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f GiB", float64(mib)/1024)
}

func holder(r Row) string {
	if r.UID == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%d)", termsafe.Line(orDash(r.Login)), *r.UID)
}

func since(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func util(u *int) string {
	if u == nil {
		return "-"
	}
	return strconv.Itoa(*u) + "%"
}
