package registry

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestUserDockerConfig(t *testing.T) {
	kc, err := parseDockerConfig([]byte(`{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"reg.example:5000":{"username":"a","password":"b"}},"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]authn.AuthConfig{
		"ubuntu:24.04":                {Username: "u", Password: "p"},
		"reg.example:5000/x/y:1":      {Username: "a", Password: "b"},
		"gcr.io/project/image:latest": {}, // a helper: never run, anonymous
	} {
		r, _ := name.ParseReference(ref)
		a, err := kc.Resolve(r.Context())
		if err != nil {
			t.Fatal(err)
		}
		got, _ := a.Authorization()
		if *got != want {
			t.Errorf("%s: %+v, want %+v", ref, *got, want)
		}
	}
	if _, err := parseDockerConfig([]byte(`{"auths":{"h":{"auth":"%%%"}}}`)); err == nil {
		t.Error("a bad auth parsed")
	}
}

func FuzzParseDockerConfig(f *testing.F) {
	f.Add([]byte(`{"auths":{"h":{"auth":"dTpw"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kc, err := parseDockerConfig(data)
		if err != nil {
			return
		}
		r, _ := name.ParseReference("h/x:1")
		if _, err := kc.Resolve(r.Context()); err != nil {
			t.Fatal(err)
		}
	})
}
