package main

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/engine"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/registry"
)

// testEngine is a Docker engine an end-to-end test runs against.
type testEngine struct {
	name string
	d    *deploy.Daemon
}

// engines are the machine's engine (the graphdriver store here) and
// Debian sid's Docker 28 with the containerd image store, started for the
// test and stopped after it.
func engines(t *testing.T) []testEngine {
	d := testbed.Docker(t)
	ce := testbed.ContainerdEngine(t, d, testbed.Sid)
	return []testEngine{{"graphdriver", d}, {"containerd", ce}}
}

// cli is a ds01 command line talking to e.
func (e testEngine) cli(t *testing.T) *cliEnv {
	c := newCLI(t)
	c.extra = append(c.extra, "DOCKER_HOST="+e.d.DaemonHost())
	return c
}

// loadBase gives e the base img under a test tag, as an administrator's
// docker load would; on the containerd store ds01's cache (c's) also holds
// it, as `ds01 base pull` leaves it, which is where ds01 learns the layer
// descriptors the engine keeps.
func (e testEngine) loadBase(t *testing.T, c *cliEnv, img v1.Image, name string) string {
	t.Helper()
	tag := loadBase(t, e.d, img, name)
	if e.d.Store == engine.Containerd {
		cache, err := registry.OpenCache(c.cache)
		if err != nil {
			t.Fatal(err)
		}
		if err := cache.Put(tag, img); err != nil {
			t.Fatal(err)
		}
	}
	return tag
}
