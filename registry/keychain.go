package registry

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/ds01/ds01/identity/asuser"
)

// maxDockerConfig caps a user's ~/.docker/config.json read by root.
const maxDockerConfig = 1 << 20

// UserKeychain is the registry credentials of a user ds01 acts for as
// root: the static "auths" of their own ~/.docker/config.json, read with
// their rights (a regular file, capped), never root's config and never a
// credential helper, which would run a program as root for them. A
// missing file gives anonymous access.
func UserKeychain(cred asuser.Cred, home string) (authn.Keychain, error) {
	data, err := asuser.ReadFile(cred, filepath.Join(home, ".docker", "config.json"), maxDockerConfig)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return staticKeychain{}, nil
		}
		return nil, fmt.Errorf("your registry credentials: %w", err)
	}
	return parseDockerConfig(data)
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

func parseDockerConfig(data []byte) (staticKeychain, error) {
	var cfg struct {
		Auths map[string]dockerAuth `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("~/.docker/config.json: %w", err)
	}
	kc := staticKeychain{}
	for host, a := range cfg.Auths {
		ac := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
		if a.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("~/.docker/config.json: auth of %s: %w", host, err)
			}
			ac.Username, ac.Password, _ = strings.Cut(string(dec), ":")
		}
		kc[registryHost(host)] = ac
	}
	return kc, nil
}

// registryHost is the key docker login writes: a URL for Docker Hub, a
// host[:port] otherwise.
func registryHost(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	if s == "index.docker.io" || s == "registry-1.docker.io" || s == "docker.io" {
		return "index.docker.io"
	}
	return s
}

type staticKeychain map[string]authn.AuthConfig

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if ac, ok := k[registryHost(r.RegistryStr())]; ok {
		return authn.FromConfig(ac), nil
	}
	return authn.Anonymous, nil
}
