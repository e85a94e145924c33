package gpu

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Container labels of an allocation. They are ds01's record of who holds
// which device: the holdings are read back from them, so they are the
// only state there is. Entries are separated by Sep, never a comma (AIME's
// mlc splits docker's label list on commas).
const (
	LabelUUIDs   = "ds01.gpu.uuids"   // GPU-…+MIG-…, as granted
	LabelIndices = "ds01.gpu.indices" // 0+3:1, in the same order
	Sep          = "+"
	// none is the value of both when a container holds no device: every
	// key is written, so that labels a container inherits from its image
	// never stand for its own.
	none = "-"
)

// maxRefs bounds a decoded allocation: a server's every GPU with seven
// MIG devices each.
const maxRefs = 512

// Ref names one granted device, as the labels keep it.
type Ref struct {
	Index string `json:"index"`
	UUID  string `json:"uuid"`
}

var indexRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,3})(:(0|[1-9][0-9]{0,3}))?$`)

// EncodeLabels is the labels recording refs (none: both "-").
func EncodeLabels(refs []Ref) map[string]string {
	if len(refs) == 0 {
		return map[string]string{LabelUUIDs: none, LabelIndices: none}
	}
	var us, is []string
	for _, r := range refs {
		us, is = append(us, r.UUID), append(is, r.Index)
	}
	return map[string]string{LabelUUIDs: strings.Join(us, Sep), LabelIndices: strings.Join(is, Sep)}
}

// ErrNoLabels is DecodeLabels on a container that has neither label: one
// ds01 made before it allocated GPUs, or not ds01's at all.
var ErrNoLabels = errors.New("no GPU allocation labels")

// DecodeLabels reads EncodeLabels back, strictly: both labels, the same
// number of entries, each a well-formed index and UUID, none twice.
func DecodeLabels(labels map[string]string) ([]Ref, error) {
	u, hasU := labels[LabelUUIDs]
	i, hasI := labels[LabelIndices]
	switch {
	case !hasU && !hasI:
		return nil, ErrNoLabels
	case !hasU || !hasI:
		return nil, fmt.Errorf("GPU labels: %s and %s come together; one is missing", LabelUUIDs, LabelIndices)
	case u == none && i == none:
		return nil, nil
	}
	us, is := strings.Split(u, Sep), strings.Split(i, Sep)
	if len(us) != len(is) || len(us) > maxRefs {
		return nil, fmt.Errorf("GPU labels: %d UUIDs and %d indices (at most %d)", len(us), len(is), maxRefs)
	}
	refs := make([]Ref, len(us))
	seen := map[string]bool{}
	for n := range us {
		r := Ref{Index: is[n], UUID: us[n]}
		if !uuidRE.MatchString(r.UUID) || !indexRE.MatchString(r.Index) {
			return nil, fmt.Errorf("GPU labels: entry %d (%q, %q) is not an index and a GPU or MIG UUID", n+1, r.Index, r.UUID)
		}
		if seen["u"+r.UUID] || seen["i"+r.Index] {
			return nil, fmt.Errorf("GPU labels: %s (%s) is listed twice", r.UUID, r.Index)
		}
		seen["u"+r.UUID], seen["i"+r.Index] = true, true
		refs[n] = r
	}
	return refs, nil
}
