// Package record is what ds01 keeps of each image it made: the record of
// every input of the build, in the user's ~/.ds01-config/images, read and
// written with the user's own credentials and checked on the way back as
// strictly as the same request on the command line; the rule of whose
// images a user may build on; and the lock of one project.
package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/ds01/ds01/assemble/label"
	"github.com/ds01/ds01/assemble/packages"
	"github.com/ds01/ds01/identity/asuser"
)

// Record is every input of an image build, kept in
// ~/.ds01-config/images/<project>.json (the DS01 scripts' place for image
// metadata) so that `image update` rebuilds from exactly these, and no
// argument can be forgotten.
type Record struct {
	Project string `json:"project"`
	Image   string `json:"image"`
	ImageID string `json:"image_id"`
	Base    struct {
		Ref    string `json:"ref"`
		ID     string `json:"id"`
		Digest string `json:"digest"`
	} `json:"base"`
	Catalog map[string]string `json:"catalog,omitempty"`
	// Packages is what was asked for, Installed what it resolved to.
	Packages  *packages.Request `json:"packages,omitempty"`
	Installed *packages.Layer   `json:"installed,omitempty"`
	Env       []string          `json:"env,omitempty"`
	Presets   []string          `json:"presets,omitempty"`
	Login     string            `json:"login"`
	Name      string            `json:"name"`
	UID       uint32            `json:"uid"`
	GID       uint32            `json:"gid"`
	// SourceDateEpoch is the fixed time the image was made with, if any.
	SourceDateEpoch *int64 `json:"source_date_epoch,omitempty"`
	Version         string `json:"ds01_version"`
	// BuiltAt is when it was made: here only, never in the image.
	BuiltAt time.Time `json:"built_at"`
	// Saved lists the layers container retire --save added on top; a
	// rebuild from the inputs above would not have them.
	Saved []SavedLayer `json:"saved,omitempty"`
	// Pushed lists where image push sent the image, newest last.
	Pushed []Pushed `json:"pushed,omitempty"`
	// Pulled says where image pull took the image from: it was not made
	// here, and the inputs above are what its labels say.
	Pulled *Pushed `json:"pulled,omitempty"`
}

// Pushed is one image in a registry: its repository, the manifest
// digest there, and when.
type Pushed struct {
	Repo   string    `json:"repo"`
	Digest string    `json:"digest"`
	At     time.Time `json:"at"`
	// ImageID is the local image that was pushed (or pulled), so that a
	// later change to it (retire --save, a rebuild) shows.
	ImageID string `json:"image_id,omitempty"`
}

// SavedLayer is one container's changes saved into the image.
type SavedLayer struct {
	Container string    `json:"container"`
	DiffID    string    `json:"diff_id"`
	Paths     int       `json:"paths"`
	Bytes     int64     `json:"bytes"`
	At        time.Time `json:"at"`
}

// maxRecord caps a record read back: it lies in the user's home, and a
// real one is a few KB.
const maxRecord = 1 << 20

// Records is a user's directory of image records, reached as that user:
// every write is made with the user's credentials beneath a directory
// opened as the user, and nothing on the way is a link (a record
// directory pointed at root's would otherwise let root's write chown or
// replace root's files).
type Records struct {
	dir *asuser.Dir
	rel string // beneath dir: .ds01-config/images, or images under DS01_CONFIG
}

// OpenRecords opens the records directory rel beneath root (the user's
// home, or $DS01_CONFIG) as cred.
func OpenRecords(cred asuser.Cred, root, rel string) (*Records, error) {
	d, err := asuser.OpenDir(cred, root)
	if err != nil {
		return nil, fmt.Errorf("opening %s for image records: %w", root, err)
	}
	return &Records{dir: d, rel: rel}, nil
}

// Close releases the directory.
func (r *Records) Close() error { return r.dir.Close() }

// Path is where a project's record lies on the host.
func (r *Records) Path(project string) string { return r.dir.Path(r.file(project)) }

// Dir is the records directory on the host.
func (r *Records) Dir() string { return r.dir.Path(r.rel) }

func (r *Records) file(project string) string { return filepath.Join(r.rel, project+".json") }

// Write stores rec atomically, as the user.
func (r *Records) Write(rec Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := r.dir.WriteFile(r.file(rec.Project), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the record of %s: %w", rec.Project, err)
	}
	return nil
}

// Read reads a project's record: a regular file, no links, at most
// maxRecord bytes, decoded strictly.
func (r *Records) Read(project string) (Record, error) {
	data, err := r.dir.ReadFile(r.file(project), maxRecord)
	if err != nil {
		return Record{}, err
	}
	rec, err := DecodeRecord(data)
	if err != nil {
		return Record{}, fmt.Errorf("%s: %w", r.Path(project), err)
	}
	if rec.Project != project {
		return Record{}, fmt.Errorf("%s: the record is of project %q, not %q", r.Path(project), rec.Project, project)
	}
	return rec, nil
}

// Remove deletes a project's record as the user; a missing one is not an
// error.
func (r *Records) Remove(project string) error {
	err := r.dir.Remove(r.file(project))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Lock serialises ds01's work on one project of the user's (create,
// update, deploy, retire), with a lock file beside the records.
func (r *Records) Lock(project string) (unlock func(), err error) {
	return r.dir.Lock(filepath.Join(r.rel, ".lock-"+project))
}

// DecodeRecord reads a record's JSON: unknown fields are refused, as a
// record is input that a user could have edited.
func DecodeRecord(data []byte) (Record, error) {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return Record{}, fmt.Errorf("not a ds01 record: %w", err)
	}
	if dec.More() {
		return Record{}, errors.New("not a ds01 record: data after the record")
	}
	return rec, nil
}

// Check validates a record read back for uid:gid as if every field had
// been typed on the command line by that user: a record lies in the
// user's home, and image update run by root must not take more from it
// than the user could ask for directly.
func (r Record) Check(uid, gid uint32) error {
	tag, _, err := label.ImageName(uid, r.Project)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if r.Image != tag {
		return fmt.Errorf("record: image %q is not the project's %s", r.Image, tag)
	}
	if r.UID != uid || r.GID != gid {
		return fmt.Errorf("%w: the record of %s is for UID/GID %d:%d", ErrOtherUser, r.Project, r.UID, r.GID)
	}
	if _, err := reference.ParseNormalizedNamed(r.Base.Ref); err != nil {
		return fmt.Errorf("record: base %q: %w", r.Base.Ref, err)
	}
	if err := ValidateEnv(r.Env); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	for _, p := range r.Presets {
		if !presetName.MatchString(p) {
			return fmt.Errorf("record: preset %q is not a preset name", p)
		}
	}
	if r.SourceDateEpoch != nil && *r.SourceDateEpoch < 0 {
		return fmt.Errorf("record: source_date_epoch %d is before 1970", *r.SourceDateEpoch)
	}
	if err := r.checkRegistries(); err != nil {
		return err
	}
	return r.checkPackages()
}

var manifestDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkRegistries validates where the image was pushed to and pulled
// from: names ds01 could have written, nothing else.
func (r Record) checkRegistries() error {
	all := r.Pushed
	if r.Pulled != nil {
		all = append(slices.Clone(all), *r.Pulled)
	}
	for _, p := range all {
		if _, err := reference.ParseNormalizedNamed(p.Repo); err != nil {
			return fmt.Errorf("record: registry repository %q: %w", p.Repo, err)
		}
		if !manifestDigest.MatchString(p.Digest) {
			return fmt.Errorf("record: %q is not a manifest digest (sha256:…)", p.Digest)
		}
	}
	return nil
}

var presetName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (r Record) checkPackages() error {
	var asked packages.Request
	if r.Packages != nil {
		asked = *r.Packages
	}
	if err := packages.CheckRecorded(asked, r.Installed); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}

// ValidateEnv checks KEY=VALUE entries for the image's environment.
func ValidateEnv(env []string) error {
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(k, " \t\n\r") {
			return fmt.Errorf("--env %q: give KEY=VALUE", kv)
		}
	}
	return nil
}

// ErrOtherUser is returned for an image or record set up for another
// UID/GID.
var ErrOtherUser = errors.New("image is set up for another user")

// ErrPackageImage is a shared package image named as a base or to deploy.
var ErrPackageImage = errors.New("a shared package image")

// ErrNotYourImage is another user's image offered as a base or to deploy.
var ErrNotYourImage = errors.New("another user's image")

var (
	userRepo    = regexp.MustCompile(`(?:^|/)ds01-(\d+)/`)
	packageRepo = regexp.MustCompile(`(?:^|/)ds01-packages/`)
)

// CheckOwnImage refuses, for a caller acting through sudo, an image that
// is another user's: named ds01-{other UID}/…, or carrying DS01 user
// labels for another UID. Root in a container of it could read whatever
// that user put into their image (a saved home, tokens), so its user
// setup is no mere mismatch to re-assemble past.
func CheckOwnImage(ref string, labels map[string]string, uid uint32) error {
	me := strconv.FormatUint(uint64(uid), 10)
	if m := userRepo.FindStringSubmatch(ref); m != nil && m[1] != me {
		return fmt.Errorf("%s: %w (UID %s): ds01 builds and deploys only your own images and shared bases; ask its owner to push it somewhere you may pull from, or build your own with `ds01 image create`", ref, ErrNotYourImage, m[1])
	}
	has, owner, _ := label.Setup(labels)
	if has && owner != "" && owner != me {
		return fmt.Errorf("%s: %w (set up for UID %s): ds01 builds and deploys only your own images and shared bases; build your own with `ds01 image create`", ref, ErrNotYourImage, owner)
	}
	// A package image holds what its first requester's --wheels gave it,
	// from a directory only they may read: reached only by asking for the
	// same packages, never by name.
	if packageRepo.MatchString(ref) || !has && labels[label.PackagesKey] != "" {
		return fmt.Errorf("%s: %w, never named as a base or image through sudo; ask for the packages with --pip, --apt or --preset on the base, and ds01 reuses the layer when the request is the same", ref, ErrPackageImage)
	}
	return nil
}
