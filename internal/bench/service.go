package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/deploy"
)

// serviceBench measures image create and container deploy through ds01
// serve, by a real user outside the docker group, against root's direct
// use for the same user (--user: the same trust work, pins and all), runs
// interleaved so that both see the same machine.
func serviceBench(ctx context.Context, d *deploy.Daemon, bin, baseTag string) ([]result, error) {
	tmp, err := os.MkdirTemp("/tmp", "ds01bench-svc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755)
	homes := filepath.Join(tmp, "homes")
	os.Mkdir(homes, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "nosuid,nodev,size=64m,mode=0755", "ds01bench", homes).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("a nosuid,nodev tmpfs for the bench user's home: %v %s", err, out)
	}
	defer exec.Command("umount", "-l", homes).Run()
	b := make([]byte, 3)
	rand.Read(b)
	login := "ds01bench-" + hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "-m", "-d", filepath.Join(homes, login), "-s", "/bin/bash", login).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("useradd: %v %s", err, out)
	}
	defer exec.Command("userdel", "-r", login).Run()
	u, err := user.Lookup(login)
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	n, err := reference.ParseNormalizedNamed(baseTag)
	if err != nil {
		return nil, err
	}
	pol := filepath.Join(tmp, "policy.toml")
	os.WriteFile(pol, []byte(fmt.Sprintf("audit_log = %q\n[bases]\nrefs = [%q]\n", filepath.Join(tmp, "audit.log"), reference.TagNameOnly(n).String())), 0o644)
	sock := filepath.Join(tmp, "ds01.sock")
	cache := "DS01_CACHE=" + filepath.Join(tmp, "cache")
	srv := exec.Command(bin, "serve", "--socket", sock, "--policy", pol)
	srv.Env = append(os.Environ(), cache)
	if err := srv.Start(); err != nil {
		return nil, err
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	asUser := func(env []string, args ...string) *exec.Cmd {
		c := exec.Command(bin, args...)
		c.Dir = u.HomeDir
		c.Env = append([]string{"HOME=" + u.HomeDir, "USER=" + login, "PATH=/usr/bin:/bin", "DS01_HOST=unix://" + sock}, env...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		return c
	}
	asRoot := func(env []string, args ...string) *exec.Cmd {
		c := exec.Command(bin, append([]string{"--direct", "--user", login}, args...)...)
		c.Env = append(append(os.Environ(), cache), env...)
		return c
	}
	defer func() {
		for _, p := range []string{"svc-direct", "svc-service"} {
			d.ImageRemove(ctx, fmt.Sprintf("ds01-%d/%s:latest", uid, p), client.ImageRemoveOptions{Force: true})
		}
	}()
	var cd, cs, dd, ds []time.Duration
	for i := range *runs + 1 {
		epoch := []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", 1700000000+i)}
		tD, err := timed(asRoot(epoch, "image", "create", "svc-direct", "--base", baseTag, "--force"))
		if err != nil {
			return nil, err
		}
		tS, err := timed(asUser(epoch, "image", "create", "svc-service", "--base", baseTag, "--force"))
		if err != nil {
			return nil, err
		}
		dD, err := timedDeploy(asRoot(nil, "container", "deploy", "svc-direct", "--memlock", "8m"), asRoot(nil, "container", "retire", "svc-direct"))
		if err != nil {
			return nil, err
		}
		dS, err := timedDeploy(asUser(nil, "container", "deploy", "svc-service", "--memlock", "8m"), asUser(nil, "container", "retire", "svc-service"))
		if err != nil {
			return nil, err
		}
		if i == 0 {
			continue // the first run on the base reads its files and warms the cache
		}
		cd, cs, dd, ds = append(cd, tD), append(cs, tS), append(dd, dD), append(ds, dS)
	}
	return []result{
		{name: "image create, root --user (direct)", median: median(cd), n: len(cd)},
		{name: "image create, the user through ds01 serve", median: median(cs), n: len(cs), note: fmt.Sprintf("%.2f× direct", float64(median(cs))/float64(median(cd)))},
		{name: "container deploy, root --user (direct)", median: median(dd), n: len(dd)},
		{name: "container deploy, the user through ds01 serve", median: median(ds), n: len(ds), note: fmt.Sprintf("%.2f× direct", float64(median(ds))/float64(median(dd)))},
	}, nil
}

func timed(c *exec.Cmd) (time.Duration, error) {
	t := time.Now()
	out, err := c.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s: %w\n%s", strings.Join(c.Args, " "), err, out)
	}
	return time.Since(t), nil
}

// timedDeploy times a deploy, then retires it (not timed).
func timedDeploy(deployCmd, retire *exec.Cmd) (time.Duration, error) {
	t, err := timed(deployCmd)
	if err != nil {
		return 0, err
	}
	_, err = timed(retire)
	return t, err
}
