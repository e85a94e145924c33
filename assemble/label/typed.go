package label

import (
	"maps"
	"strconv"
	"strings"
	"time"
)

// Image is what ds01 writes on a user's image besides AIME's user labels
// (which assemble sets from the account): every input of the build.
type Image struct {
	UID, GID   uint32
	Username   string // the name inside the image
	Login      string // the host login
	Project    string
	Base       string // the base as the user named it
	BaseID     string // the store's own ID of the base
	BaseDigest string
	Version    string // ds01's
	// SourceDateEpoch is the fixed time the image was made with, if any.
	SourceDateEpoch *int64
	Catalog         map[string]string // the AIME catalog entry of the base
	PackagesApt     []string          // pinned name=version
	PackagesPip     []string          // pinned name==version
	PackagesLayer   string            // diff ID of the package layer
}

// Encode is the labels, every value escaped.
func (im Image) Encode() map[string]string {
	m := map[string]string{
		HasUserSetup:  "true",
		UserID:        strconv.FormatUint(uint64(im.UID), 10),
		GroupID:       strconv.FormatUint(uint64(im.GID), 10),
		Username:      im.Username,
		Login:         im.Login,
		Project:       im.Project,
		Base:          im.Base,
		BaseID:        im.BaseID,
		Version:       im.Version,
		OCIBaseName:   im.Base,
		OCIBaseDigest: im.BaseDigest,
	}
	for k, v := range im.Catalog {
		m[CatalogPrefix+k] = v
	}
	if im.SourceDateEpoch != nil {
		m[SourceDateEpoch] = strconv.FormatInt(*im.SourceDateEpoch, 10)
	}
	if im.PackagesLayer != "" {
		// Spaces, not commas: see Escape.
		m[PackagesApt] = strings.Join(im.PackagesApt, " ")
		m[PackagesPip] = strings.Join(im.PackagesPip, " ")
		m[PackagesLayer] = im.PackagesLayer
	}
	EscapeAll(m)
	return m
}

// DecodeImage reads an image's labels back; has says whether it carries
// a user at all (AIME's labels or ds01's).
func DecodeImage(m map[string]string) (im Image, has bool) {
	has, uid, gid := Setup(m)
	get := func(k string) string { return Unescape(m[k]) }
	im = Image{
		Username: get(Username), Login: get(Login), Project: get(Project), Base: get(Base),
		BaseID: get(BaseID), BaseDigest: get(OCIBaseDigest), Version: get(Version), PackagesLayer: get(PackagesLayer),
		PackagesApt: strings.Fields(get(PackagesApt)), PackagesPip: strings.Fields(get(PackagesPip)),
	}
	if n, err := strconv.ParseUint(uid, 10, 32); err == nil {
		im.UID = uint32(n)
	}
	if n, err := strconv.ParseUint(gid, 10, 32); err == nil {
		im.GID = uint32(n)
	}
	if n, err := strconv.ParseInt(get(SourceDateEpoch), 10, 64); err == nil {
		im.SourceDateEpoch = &n
	}
	for k, v := range m {
		if c, ok := strings.CutPrefix(k, CatalogPrefix); ok {
			if im.Catalog == nil {
				im.Catalog = map[string]string{}
			}
			im.Catalog[c] = Unescape(v)
		}
	}
	return im, has
}

// Container is what ds01 writes on a container: AIME's labels, so that
// `mlc list/open/start/stop/remove` manage it, and ds01's own.
type Container struct {
	Login                   string
	Name                    string // the short name; the container is {Name}._.{UID}
	UID, GID                uint32
	Workspace, Data, Models string // host directories ("" when not bound)
	GPUs                    string // as the user gave them
	Framework, Arch         string // from the catalog, if the image came from it
	CreatedAt               time.Time
	Interface               string // what made it: cli
	SetuidRiskAccepted      bool
	// Extra are further labels (pinned binds), already ds01's own keys.
	Extra map[string]string
}

// Encode is the labels, every value escaped.
func (c Container) Encode() map[string]string {
	fw := c.Framework
	if fw == "" {
		fw = "custom"
	}
	m := map[string]string{
		"aime.mlc":              c.Login,
		"aime.mlc.NAME":         c.Name,
		"aime.mlc.USER":         c.Login,
		"aime.mlc.MLC_VERSION":  MLCVersion,
		"aime.mlc.WORK_MOUNT":   c.Workspace,
		"aime.mlc.DATA_MOUNT":   orDash(c.Data),
		"aime.mlc.MODELS_MOUNT": orDash(c.Models),
		"aime.mlc.FRAMEWORK":    fw,
		"aime.mlc.GPUS":         orDash(c.GPUs),
		"aime.mlc.ARCH":         orDash(c.Arch),
		User:                    c.Login,
		UserID:                  strconv.FormatUint(uint64(c.UID), 10),
		GroupID:                 strconv.FormatUint(uint64(c.GID), 10),
		Name:                    c.Name,
		Managed:                 "true",
		GPUs:                    orDash(c.GPUs),
		CreatedAt:               c.CreatedAt.UTC().Format(time.RFC3339),
		Interface:               c.Interface,
	}
	// Every key of ds01's is written, "-" when unset: a container inherits
	// its image's labels, and a base's own ds01.* must not stand for ds01's.
	m[SetuidRisk] = "-"
	if c.SetuidRiskAccepted {
		m[SetuidRisk] = "accepted-by-root"
	}
	for _, n := range []string{"workspace", "data", "models"} {
		m[Bind+n] = "-"
	}
	maps.Copy(m, c.Extra)
	EscapeAll(m)
	return m
}

// DecodeContainer reads a container's labels back.
func DecodeContainer(m map[string]string) Container {
	get := func(k string) string { return Unescape(m[k]) }
	undash := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	c := Container{
		Login: get(User), Name: get(Name), Workspace: get("aime.mlc.WORK_MOUNT"),
		Data: undash(get("aime.mlc.DATA_MOUNT")), Models: undash(get("aime.mlc.MODELS_MOUNT")),
		GPUs: undash(get(GPUs)), Arch: undash(get("aime.mlc.ARCH")), Framework: get("aime.mlc.FRAMEWORK"),
		Interface: get(Interface), SetuidRiskAccepted: m[SetuidRisk] == "accepted-by-root",
	}
	if c.Framework == "custom" {
		c.Framework = ""
	}
	if n, err := strconv.ParseUint(m[UserID], 10, 32); err == nil {
		c.UID = uint32(n)
	}
	if n, err := strconv.ParseUint(m[GroupID], 10, 32); err == nil {
		c.GID = uint32(n)
	}
	c.CreatedAt, _ = time.Parse(time.RFC3339, m[CreatedAt])
	for k, v := range m {
		if strings.HasPrefix(k, Bind) && v != "-" {
			if c.Extra == nil {
				c.Extra = map[string]string{}
			}
			c.Extra[k] = Unescape(v)
		}
	}
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
