// Package label is the one home of what ds01 writes on images and
// containers for others to read: the label keys (AIME's, which
// mlc-patched.py reads, and ds01's own), their values, which never hold a
// comma, and the names ds01-{UID}/{project}:latest and {name}._.{UID}.
package label

import (
	"fmt"
	"regexp"
	"strings"
)

// Image labels that say an image carries its user: read by DS01's
// mlc-patched.py and by container deploy to skip any setup at container
// creation.
const (
	AIMEHasUserSetup = "aime.mlc.DS01_HAS_USER_SETUP"
	AIMEUserID       = "aime.mlc.DS01_USER_ID"
	AIMEGroupID      = "aime.mlc.DS01_GROUP_ID"
	AIMEUsername     = "aime.mlc.DS01_USERNAME"
)

// ds01's own image labels: every input of the build, for image list and
// for a later build on the image.
const (
	HasUserSetup    = "ds01.has_user_setup"
	UserID          = "ds01.user_id"
	GroupID         = "ds01.group_id"
	Username        = "ds01.username"
	Login           = "ds01.login"
	Project         = "ds01.project"
	Base            = "ds01.base"
	BaseID          = "ds01.base.id"
	Version         = "ds01.version"
	SourceDateEpoch = "ds01.source_date_epoch"
	OCIBaseName     = "org.opencontainers.image.base.name"
	OCIBaseDigest   = "org.opencontainers.image.base.digest"
	// CatalogPrefix prefixes the AIME catalog entry the base came from.
	CatalogPrefix = "ds01.catalog."
	// What the package layer holds, pinned, and its diff ID.
	PackagesApt   = "ds01.packages.apt"
	PackagesPip   = "ds01.packages.pip"
	PackagesLayer = "ds01.packages.layer"
	// PackagesKey marks a shared package image (a base plus a package
	// layer, no user) with its cache key.
	PackagesKey = "ds01.packages.key"
	// Layers records the image's layer descriptors (media type, digest,
	// size) as the manifest ds01 loads lists them. The containerd image
	// store keeps an image's layers under exactly those descriptors, and
	// the Docker API shows only diff IDs: this record is how a later
	// build on the image (another user's, say) names them without reading
	// anything back. Written only when every descriptor is known.
	Layers = "ds01.layers"
)

// Container labels. AIME's let `mlc list/open/start/stop/remove` manage
// ds01's containers; DS01's let ds01 find its own.
const (
	Managed   = "ds01.managed"
	User      = "ds01.user"
	Name      = "ds01.name"
	GPUs      = "ds01.gpus"
	CreatedAt = "ds01.created_at"
	Interface = "ds01.interface"
	// SetuidRisk marks a container whose binds root let past the setuid
	// rule.
	SetuidRisk = "ds01.setuid_risk"
	// Bind prefixes the record of a pinned bind source, per mount name.
	Bind = "ds01.bind."
	// Purpose marks the containers ds01 makes for itself (reading a
	// base's files, installing packages), never a user's.
	Purpose = "ds01.purpose"
	// For names the image a ds01 container of Purpose works towards, so
	// that an administrator's docker ps (and a test) can tell whose
	// request an install container serves.
	For = "ds01.for"
	// MLCVersion is the AIME container format these labels follow.
	MLCVersion = "4"
)

// Setup reads an image's DS01 user labels, the AIME-era names or ds01's
// own.
func Setup(labels map[string]string) (has bool, uid, gid string) {
	pick := func(a, b string) string {
		if v := labels[a]; v != "" {
			return v
		}
		return labels[b]
	}
	has = pick(AIMEHasUserSetup, HasUserSetup) == "true"
	return has, pick(AIMEUserID, UserID), pick(AIMEGroupID, GroupID)
}

// projectRE is Docker's rule for one path component of a repository name.
var projectRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)

// ImageName is the image of a user's project: ds01-{UID}/{project}:latest.
// A ":latest" the user typed is not doubled; any other tag is refused,
// since a project has one image.
func ImageName(uid uint32, project string) (name, cleanProject string, err error) {
	p, tag, hasTag := strings.Cut(project, ":")
	if hasTag && tag != "latest" {
		return "", "", fmt.Errorf("project %q: a project has one image, ds01-%d/%s:latest; drop the :%s", project, uid, p, tag)
	}
	if len(p) > 128 || !projectRE.MatchString(p) {
		return "", "", fmt.Errorf("project %q is not a valid image name: use lowercase letters, digits, and '.', '_' or '-' between them (e.g. my-project)", p)
	}
	return fmt.Sprintf("ds01-%d/%s:latest", uid, p), p, nil
}

// ProjectOf is the project of uid's image tag ds01-{UID}/{project}:latest,
// and whether tag is one.
func ProjectOf(uid uint32, tag string) (string, bool) {
	rest, ok := strings.CutPrefix(tag, fmt.Sprintf("ds01-%d/", uid))
	if !ok {
		return "", false
	}
	want, project, err := ImageName(uid, rest)
	return project, err == nil && (want == tag || want == tag+":latest")
}

// ContainerName is AIME's convention: {name}._.{UID}.
func ContainerName(name string, uid uint32) string { return fmt.Sprintf("%s._.%d", name, uid) }

// UserRepo is the repository prefix of uid's images, ds01-{UID}/.
func UserRepo(uid uint32) string { return fmt.Sprintf("ds01-%d/", uid) }

// Tag is ImageName for a project already known to be valid (a container's
// short name, checked when it was made): its name, or "" if it is not.
func Tag(uid uint32, project string) string {
	name, _, err := ImageName(uid, project)
	if err != nil {
		return ""
	}
	return name
}
