package testbed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
)

// Wheels builds the pure-Python test packages under src (one directory a
// package) into wheels, offline, inside the bookworm test base (pip wheel
// --no-build-isolation: setuptools and wheel come with Debian's
// python3-pip), and returns the directory holding them. There is no PyPI
// here; the result is cached beside the test bases, keyed by the sources.
func Wheels(t testing.TB, d *deploy.Daemon, src string) string {
	t.Helper()
	h := sha256.New()
	filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			data, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(src, p)
			h.Write([]byte(rel))
			h.Write(data)
		}
		return nil
	})
	dir, err := cacheDir()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "wheels-"+hex.EncodeToString(h.Sum(nil))[:12])
	if m, _ := filepath.Glob(filepath.Join(out, "*.whl")); len(m) > 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tag := Prefix(t) + "/wheel-builder:latest"
	RemoveImage(t, d, tag)
	if _, err := d.Load(ctx, Base(t, Bookworm), tag, nil); err != nil {
		t.Fatal(err)
	}
	if err := BuildWheels(ctx, d, tag, src, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// BuildWheels builds every package directory under src into wheels in out
// (made whole or not at all), inside a container of image, offline.
func BuildWheels(ctx context.Context, d *deploy.Daemon, image, src, out string) error {
	work, err := os.MkdirTemp("", "ds01-wheels-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.CopyFS(filepath.Join(work, "src"), os.DirFS(src)); err != nil {
		return err
	}
	os.Chmod(work, 0o755)
	tmpOut := out + ".partial"
	os.RemoveAll(tmpOut)
	if err := os.MkdirAll(tmpOut, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmpOut)
	created, err := d.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, User: "0:0", WorkingDir: "/src",
			Cmd: []string{"sh", "-c", "python3 -m pip wheel -q --no-build-isolation --no-deps --no-index -w /out */"}},
		HostConfig: &container.HostConfig{NetworkMode: "none", Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: filepath.Join(work, "src"), Target: "/src"},
			{Type: mount.TypeBind, Source: tmpOut, Target: "/out"},
		}},
	})
	if err != nil {
		return err
	}
	defer d.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	if _, err := d.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return err
	}
	wait := d.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case w := <-wait.Result:
		if w.StatusCode != 0 {
			logs, _ := d.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
			var b [8192]byte
			n, _ := logs.Read(b[:])
			return fmt.Errorf("pip wheel exited %d: %s", w.StatusCode, b[:n])
		}
	case err := <-wait.Error:
		return err
	}
	return os.Rename(tmpOut, out)
}

// cacheDir is where test bases and wheels are kept: $DS01_TESTBED_CACHE,
// else ~/.cache/ds01-testbed.
func cacheDir() (string, error) {
	if d := os.Getenv("DS01_TESTBED_CACHE"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(c, "ds01-testbed"), nil
}
