package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
	Packages  *Packages      `json:"packages,omitempty"`
	Installed *PackageResult `json:"installed,omitempty"`
	Env       []string       `json:"env,omitempty"`
	Presets   []string       `json:"presets,omitempty"`
	Login     string         `json:"login"`
	Name      string         `json:"name"`
	UID       uint32         `json:"uid"`
	GID       uint32         `json:"gid"`
	// SourceDateEpoch is the fixed time the image was made with, if any.
	SourceDateEpoch *int64 `json:"source_date_epoch,omitempty"`
	Version         string `json:"ds01_version"`
	// BuiltAt is when it was made: here only, never in the image.
	BuiltAt time.Time `json:"built_at"`
	// Saved lists the layers container retire --save added on top; a
	// rebuild from the inputs above would not have them.
	Saved []SavedLayer `json:"saved,omitempty"`
}

// SavedLayer is one container's changes saved into the image.
type SavedLayer struct {
	Container string    `json:"container"`
	DiffID    string    `json:"diff_id"`
	Paths     int       `json:"paths"`
	Bytes     int64     `json:"bytes"`
	At        time.Time `json:"at"`
}

// RecordFromResult is the record of a build.
func RecordFromResult(req CreateRequest, res *CreateResult, now time.Time) Record {
	r := Record{
		Project: res.Project, Image: res.Tag, ImageID: res.ImageID,
		Login: req.Login, Name: req.Account.Name, UID: req.Account.UID, GID: req.Account.GID,
		Version: req.Version, BuiltAt: now.UTC(),
	}
	r.Base.Ref, r.Base.ID, r.Base.Digest = req.BaseRef, res.Base.ID, res.Base.Digest()
	r.Catalog = req.Catalog
	if !req.Packages.Empty() {
		pk := req.Packages
		if req.Asked != nil {
			pk = *req.Asked
		}
		r.Packages, r.Installed = &pk, res.Packages
	}
	r.Env, r.Presets = req.Env, req.Presets
	if !req.Created.IsZero() {
		s := req.Created.Unix()
		r.SourceDateEpoch = &s
	}
	return r
}

func recordPath(dir, project string) string { return filepath.Join(dir, project+".json") }

// WriteRecord stores r in dir atomically. When owner is not nil (root
// acting for a user) the file and any directory it creates belong to that
// user.
func WriteRecord(dir string, r Record, owner *[2]int) error {
	if err := mkdirOwned(dir, owner); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	p := recordPath(dir, r.Project)
	tmp, err := os.CreateTemp(dir, ".tmp-"+r.Project+"-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && owner != nil {
		err = os.Chown(tmp.Name(), owner[0], owner[1])
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

func mkdirOwned(dir string, owner *[2]int) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirOwned(filepath.Dir(dir), owner); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	if owner != nil {
		return os.Chown(dir, owner[0], owner[1])
	}
	return nil
}

// ReadRecord reads the record of a project.
func ReadRecord(dir, project string) (Record, error) {
	var r Record
	data, err := os.ReadFile(recordPath(dir, project))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", recordPath(dir, project), err)
	}
	return r, nil
}

// RemoveRecord deletes a project's record; a missing one is not an error.
func RemoveRecord(dir, project string) error {
	err := os.Remove(recordPath(dir, project))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}
