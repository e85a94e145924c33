// Command bench measures `ds01 image create` against the alternatives, all
// in one run on one machine, and prints medians and ratios:
//
//	go run ./internal/bench [-sizes 0.5G,4G] [-runs 5] [-old-runs 3]
//
// It builds synthetic bases (the bullseye test base plus incompressible
// random layers) once, keeps their tars in the test bed cache and the
// images in the daemon under ds01bench/ (removed with -clean), and removes
// everything else it makes.
package main

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/daemon"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01/assemble"
	"github.com/ds01/ds01/assemble/pipeline"
	"github.com/ds01/ds01/assemble/source"
	"github.com/ds01/ds01/deploy"
	"github.com/ds01/ds01/internal/testbed"
	"github.com/ds01/ds01/layers"
	"github.com/ds01/ds01/passwd"
	"github.com/ds01/ds01/registry"
)

var (
	sizes   = flag.String("sizes", "0.5G,4G", "synthetic base sizes, comma-separated (G or M suffix)")
	runs    = flag.Int("runs", 5, "repetitions of each fast measurement (the median is printed)")
	oldRuns = flag.Int("old-runs", 3, "repetitions of the slow alternatives (docker build, run+commit, ggcr round trip, full load)")
	clean   = flag.Bool("clean", false, "remove the cached bench bases from the daemon and exit")
	skip    = flag.String("skip", "", "comma-separated measurements to skip: deploy,pull,build,old,ggcr,full,crane,packages,containerd,service")
	only    = flag.String("only", "", "run only this part: packages, containerd, service")
	engine  = flag.String("engines", "sid,trixie", "the containerd-store engines to measure on, comma-separated: sid (Docker 28.5), trixie (Docker 26.1)")
)

const prefix = "ds01bench"

var acct = passwd.Account{Name: "h-baker", UID: 1722830498, GID: 1722830498, Groups: []string{"sudo", "video"}}

func main() {
	flag.Parse()
	if len(os.Args) > 2 && os.Args[1] == "ggcr-roundtrip" {
		// A child process, so that its peak memory is its own.
		if err := ggcrRoundTrip(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name   string
	median time.Duration
	n      int
	rss    int64 // peak RSS in bytes, when measured
	note   string
}

func run() error {
	ctx := context.Background()
	d, err := deploy.Connect(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	if *clean {
		res, _ := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", prefix+"/*")})
		for _, im := range res.Items {
			for _, tag := range im.RepoTags {
				d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
				fmt.Println("removed", tag)
			}
		}
		return nil
	}
	bin, err := buildDS01()
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(bin))
	fmt.Printf("Docker %s API, %s store (%s); %d CPUs\n", d.APIVersion, d.Store, d.Driver, nproc())

	if *only == "packages" || *only == "" && !skipped("packages") {
		rs, err := benchPackages(ctx, d, bin)
		if err != nil {
			return fmt.Errorf("packages: %w", err)
		}
		fmt.Printf("\npackages on the bookworm base (%s): median of runs\n", packageSetLabel)
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "what\tmedian\truns\tnote")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.name, r.median.Round(time.Millisecond), r.n, r.note)
		}
		tw.Flush()
		if *only == "packages" {
			return nil
		}
	}
	if *only == "containerd" || *only == "" && !skipped("containerd") {
		if err := benchContainerd(ctx, d); err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
		if *only == "containerd" {
			return nil
		}
	}
	if *only == "service" || *only == "" && !skipped("service") {
		img, err := syntheticBase(ctx, 512<<20)
		if err != nil {
			return err
		}
		baseTag := prefix + "/base-0.5g:latest"
		if err := ensureLoaded(ctx, d, img, baseTag); err != nil {
			return err
		}
		rs, err := serviceBench(ctx, d, bin, baseTag)
		if err != nil {
			return fmt.Errorf("service: %w", err)
		}
		fmt.Println("\nthrough ds01 serve against direct use (0.5 GB base), runs interleaved: median")
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "what\tmedian\truns\tnote")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.name, r.median.Round(time.Millisecond), r.n, r.note)
		}
		tw.Flush()
		if *only == "service" {
			return nil
		}
	}
	rssBySize := map[string]int64{}
	for _, s := range strings.Split(*sizes, ",") {
		size, err := parseSize(s)
		if err != nil {
			return err
		}
		rs, rss, err := benchSize(ctx, d, bin, s, size)
		if err != nil {
			return err
		}
		rssBySize[s] = rss
		printTable(s, size, rs)
	}
	if len(rssBySize) > 1 {
		fmt.Println("ds01 image create peak RSS by base size:")
		for _, s := range strings.Split(*sizes, ",") {
			fmt.Printf("  %-6s %6.1f MB\n", s, float64(rssBySize[s])/1e6)
		}
	}
	return nil
}

func printTable(label string, size int64, rs []result) {
	fmt.Printf("\nbase %s (%.2f GB): median of runs, ratio to `ds01 image create`\n", label, float64(size)/1e9)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "what\tmedian\truns\tratio\tpeak RSS\tnote")
	ref := rs[0].median
	for _, r := range rs {
		rss := ""
		if r.rss > 0 {
			rss = fmt.Sprintf("%.1f MB", float64(r.rss)/1e6)
		}
		ratio := fmt.Sprintf("%.1f×", float64(r.median)/float64(ref))
		if r.n == 0 {
			ratio = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.name, r.median.Round(time.Millisecond), r.n, ratio, rss, r.note)
	}
	tw.Flush()
}

func skipped(name string) bool { return slices.Contains(strings.Split(*skip, ","), name) }

func benchSize(ctx context.Context, d *deploy.Daemon, bin, label string, size int64) ([]result, int64, error) {
	img, err := syntheticBase(ctx, size)
	if err != nil {
		return nil, 0, err
	}
	baseTag := fmt.Sprintf("%s/base-%s:latest", prefix, strings.ToLower(label))
	if err := ensureLoaded(ctx, d, img, baseTag); err != nil {
		return nil, 0, err
	}
	var rs []result
	tmp, err := os.MkdirTemp("", "ds01bench-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(tmp)
	env := append(os.Environ(), "DS01_CONFIG="+filepath.Join(tmp, "config"), "DS01_CACHE="+filepath.Join(tmp, "cache"))
	project := "bench-" + strings.ToLower(strings.ReplaceAll(label, ".", "-"))
	tag := fmt.Sprintf("ds01-%d/%s:latest", acct.UID, project)
	defer d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	create := exec.Command(bin, "--user", "h.baker@hertie-school.lan", "--uid", "1722830498", "--gid", "1722830498", "image", "create", project, "--base", baseTag, "--force")
	create.Env = env

	// The first build on a base copies its files out of a container.
	first, rss0, err := timeCmd(create)
	if err != nil {
		return nil, 0, err
	}
	var ts []time.Duration
	var rss int64
	for i := range *runs {
		// A new SOURCE_DATE_EPOCH each run: a new layer and image, as for
		// a new user, rather than a reload of the same bytes.
		create.Env = append(env, fmt.Sprintf("SOURCE_DATE_EPOCH=%d", 1700000000+i))
		t, r, err := timeCmd(create)
		if err != nil {
			return nil, 0, err
		}
		ts = append(ts, t)
		rss = max(rss, r)
	}
	rs = append(rs, result{name: "ds01 image create (cached base)", median: median(ts), n: len(ts), rss: rss, note: "files index cached, base layers not sent, a new layer each run"})
	rs = append(rs, result{name: "ds01 image create (first on this base)", median: first, n: 1, rss: rss0, note: "files copied from a never-started container"})

	if !skipped("deploy") {
		more, err := deployBench(ctx, d, bin, env, project, baseTag, tmp)
		if err != nil {
			return nil, 0, fmt.Errorf("deploy: %w", err)
		}
		rs = append(rs, more...)
	}

	userLayer, err := userLayerFor(ctx, d, baseTag, time.Time{})
	if err != nil {
		return nil, 0, err
	}

	if !skipped("crane") {
		r, err := cranePipeline(ctx, d, img, func(i int) (v1.Layer, error) {
			return userLayerFor(ctx, d, baseTag, time.Unix(int64(1800000000+i), 0))
		})
		if err != nil {
			return nil, 0, fmt.Errorf("crane append + docker pull: %w", err)
		}
		rs = append(rs, r)
	}
	if !skipped("pull") {
		more, err := pullBench(ctx, bin, img)
		if err != nil {
			return nil, 0, fmt.Errorf("pull: %w", err)
		}
		rs = append(rs, more...)
	}
	if !skipped("build") {
		r, err := dockerBuild(ctx, d, baseTag)
		if err != nil {
			return nil, 0, fmt.Errorf("docker build: %w", err)
		}
		rs = append(rs, r)
	}
	if !skipped("old") {
		r, err := oldFlow(ctx, d)
		if err != nil {
			return nil, 0, fmt.Errorf("old flow: %w", err)
		}
		rs = append(rs, r)
	}
	if !skipped("ggcr") {
		r, err := measureGGCR(ctx, d, baseTag, userLayer)
		if err != nil {
			return nil, 0, fmt.Errorf("ggcr round trip: %w", err)
		}
		rs = append(rs, r)
	}
	if !skipped("full") {
		r, err := fullLoad(ctx, d, img, userLayer)
		if err != nil {
			return nil, 0, fmt.Errorf("full docker load: %w", err)
		}
		rs = append(rs, r)
	}
	return rs, rss, nil
}

// syntheticBase is the bullseye test base plus random layers of up to
// 1 GiB each, to size bytes in all.
func syntheticBase(ctx context.Context, size int64) (v1.Image, error) {
	dir, err := benchCache()
	if err != nil {
		return nil, err
	}
	bullseye, err := registry.Bullseye.Tar(ctx, dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(bullseye)
	if err != nil {
		return nil, err
	}
	ls := []v1.Layer{}
	l, err := layers.FromFile(bullseye)
	if err != nil {
		return nil, err
	}
	ls = append(ls, l)
	left := size - fi.Size()
	for i := 0; left > 0; i++ {
		n := min(left, 1<<30)
		p := filepath.Join(dir, fmt.Sprintf("random-%d-%d.tar", i, n))
		if _, err := os.Stat(p); err != nil {
			if err := writeRandomTar(p, int64(i), n); err != nil {
				return nil, err
			}
		}
		l, err := layers.FromFile(p)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		left -= n
	}
	return registry.ImageFromLayers("bench", ls...)
}

func benchCache() (string, error) {
	if d := os.Getenv("DS01_TESTBED_CACHE"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	return filepath.Join(c, "ds01-testbed"), err
}

// writeRandomTar writes a tar holding one file of n incompressible bytes
// (ChaCha8, seeded, so the same file comes back every time).
func writeRandomTar(path string, seed, n int64) error {
	tmp := path + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	body := n - 3*512 // header and end blocks
	if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("opt/weights-%d.bin", seed), Mode: 0o644, Size: body, Typeflag: tar.TypeReg, ModTime: registry.DebianCreated}); err != nil {
		return err
	}
	var s [32]byte
	s[0] = byte(seed)
	if _, err := io.CopyN(tw, rand.NewChaCha8(s), body); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func ensureLoaded(ctx context.Context, d *deploy.Daemon, img v1.Image, tag string) error {
	want, err := img.ConfigName()
	if err != nil {
		return err
	}
	if ins, err := d.ImageInspect(ctx, tag); err == nil && ins.ID == want.String() {
		return nil
	}
	t := time.Now()
	st, err := d.Load(ctx, img, tag, nil)
	if err != nil {
		return err
	}
	fmt.Printf("loaded %s once: %.2f GB in %s\n", tag, float64(st.Sent)/1e9, time.Since(t).Round(time.Millisecond))
	return nil
}

func userLayerFor(ctx context.Context, d *deploy.Daemon, baseTag string, created time.Time) (v1.Layer, error) {
	b, err := source.InDaemon(ctx, d.Docker, baseTag)
	if err != nil {
		return nil, err
	}
	files, err := source.Files(ctx, d.Docker, b.ID, layers.UserWant)
	if err != nil {
		return nil, err
	}
	res, err := assemble.Image(b.Image, files, assemble.Options{Account: acct, Created: created})
	if err != nil {
		return nil, err
	}
	return res.UserLayer, nil
}

// cranePipeline is what one would do with a registry: append the user
// layer in the registry (crane append: only the new layer is uploaded) and
// let a daemon that already pulled the base pull the result.
func cranePipeline(ctx context.Context, d *deploy.Daemon, base v1.Image, userLayer func(run int) (v1.Layer, error)) (result, error) {
	dir, err := os.MkdirTemp("", "ds01bench-registry-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	r, err := testbed.StartRegistryIn(dir)
	if err != nil {
		return result{}, err
	}
	defer r.Stop()
	baseRef, err := name.ParseReference(r.Host+"/"+prefix+"/base:latest", name.Insecure)
	if err != nil {
		return result{}, err
	}
	if err := remote.Write(baseRef, base); err != nil {
		return result{}, err
	}
	if err := pull(ctx, d, baseRef.String()); err != nil {
		return result{}, err
	}
	defer d.ImageRemove(ctx, baseRef.String(), client.ImageRemoveOptions{Force: true, PruneChildren: true})
	var ts []time.Duration
	for i := range *runs {
		// A new layer each run, so neither the registry nor the daemon
		// has it already.
		ul, err := userLayer(i)
		if err != nil {
			return result{}, err
		}
		t := time.Now()
		ref, _ := name.ParseReference(fmt.Sprintf("%s/%s/app:%d", r.Host, prefix, i), name.Insecure)
		remoteBase, err := remote.Image(baseRef)
		if err != nil {
			return result{}, err
		}
		img, err := mutate.Append(remoteBase, mutate.Addendum{Layer: ul})
		if err != nil {
			return result{}, err
		}
		if err := remote.Write(ref, img); err != nil {
			return result{}, err
		}
		if err := pull(ctx, d, ref.String()); err != nil {
			return result{}, err
		}
		ts = append(ts, time.Since(t))
		d.ImageRemove(ctx, ref.String(), client.ImageRemoveOptions{Force: true, PruneChildren: true})
	}
	return result{name: "crane append + docker pull (loopback registry)", median: median(ts), n: len(ts), note: "needs a registry; the daemon pulled the base from it first"}, nil
}

func pull(ctx context.Context, d *deploy.Daemon, ref string) error {
	raw, ok := d.Engine.(*client.Client)
	if !ok {
		return fmt.Errorf("pull needs a Docker client")
	}
	rc, err := raw.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func dockerBuild(ctx context.Context, d *deploy.Daemon, baseTag string) (result, error) {
	dir, err := os.MkdirTemp("", "ds01bench-build-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	df := fmt.Sprintf(`FROM %s
RUN groupadd -g %[2]d %[3]s && useradd -l -u %[2]d -g %[2]d -m -s /bin/bash -G sudo,video %[3]s \
 && echo '%[3]s ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ds01-%[3]s && chmod 0440 /etc/sudoers.d/ds01-%[3]s \
 && mkdir -p /home/%[3]s/.local/bin /workspace && chown -R %[2]d:%[2]d /home/%[3]s /workspace \
 && : > /var/log/lastlog && : > /var/log/faillog
LABEL aime.mlc.DS01_HAS_USER_SETUP=true aime.mlc.DS01_USER_ID=%[2]d aime.mlc.DS01_GROUP_ID=%[2]d aime.mlc.DS01_USERNAME=%[3]s
USER %[2]d
WORKDIR /workspace
`, baseTag, acct.UID, acct.Name)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return result{}, err
	}
	tag := prefix + "/built:latest"
	defer d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	var ts []time.Duration
	for range *oldRuns {
		cmd := exec.CommandContext(ctx, "docker", "build", "--no-cache", "-q", "-t", tag, dir)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		t, _, err := timeCmd(cmd)
		if err != nil {
			return result{}, err
		}
		ts = append(ts, t)
		d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	}
	return result{name: "docker build (useradd -l, sudoers, labels)", median: median(ts), n: len(ts), note: "legacy builder, --no-cache"}, nil
}

// oldFlow is what the DS01 scripts did at container creation: docker run
// with useradd (no -l, so lastlog grows with the UID) and docker commit.
func oldFlow(ctx context.Context, d *deploy.Daemon) (result, error) {
	tag := prefix + "/old-bullseye:latest"
	img, err := registry.Bullseye.Image(ctx, must(benchCache()))
	if err != nil {
		return result{}, err
	}
	if err := ensureLoaded(ctx, d, img, tag); err != nil {
		return result{}, err
	}
	const uid = 20000000
	script := fmt.Sprintf("groupadd -g %[1]d u && useradd -u %[1]d -g %[1]d -m -s /bin/bash u && echo 'u ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/u", uid)
	committed := prefix + "/old-committed:latest"
	var ts []time.Duration
	var size int64
	for i := range *oldRuns {
		name := fmt.Sprintf("%s-old-%d", prefix, i)
		t := time.Now()
		for _, args := range [][]string{
			{"run", "--name", name, tag, "bash", "-c", script},
			{"commit", name, committed},
			{"rm", name},
		} {
			if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
				exec.Command("docker", "rm", "-f", name).Run()
				return result{}, fmt.Errorf("docker %s: %w\n%s", args[0], err, out)
			}
		}
		ts = append(ts, time.Since(t))
		if ins, err := d.ImageInspect(ctx, committed); err == nil {
			size = ins.Size
		}
		d.ImageRemove(ctx, committed, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	}
	return result{name: "old flow: docker run useradd + docker commit", median: median(ts), n: len(ts), note: fmt.Sprintf("bullseye base, UID %d: committed image %.1f GB", uid, float64(size)/1e9)}, nil
}

func measureGGCR(ctx context.Context, d *deploy.Daemon, baseTag string, userLayer v1.Layer) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	lf, err := os.CreateTemp("", "ds01bench-layer-")
	if err != nil {
		return result{}, err
	}
	defer os.Remove(lf.Name())
	rc, _ := userLayer.Uncompressed()
	io.Copy(lf, rc)
	rc.Close()
	lf.Close()
	tag := prefix + "/ggcr:latest"
	defer d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	var ts []time.Duration
	var rss int64
	for range *oldRuns {
		cmd := exec.CommandContext(ctx, self, "ggcr-roundtrip", baseTag, lf.Name())
		cmd.Args = append(cmd.Args, tag)
		t, r, err := timeCmd(cmd)
		if err != nil {
			return result{}, err
		}
		ts = append(ts, t)
		rss = max(rss, r)
	}
	return result{name: "ggcr daemon.Image → mutate.Append → daemon.Write", median: median(ts), n: len(ts), rss: rss, note: "saves and reloads the whole base"}, nil
}

func ggcrRoundTrip(baseTag, layerPath string) error {
	tag := os.Args[4]
	ref, err := name.ParseReference(baseTag)
	if err != nil {
		return err
	}
	base, err := daemon.Image(ref)
	if err != nil {
		return err
	}
	l, err := layers.FromFile(layerPath)
	if err != nil {
		return err
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: l})
	if err != nil {
		return err
	}
	out, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	_, err = daemon.Write(out, img)
	return err
}

func fullLoad(ctx context.Context, d *deploy.Daemon, base v1.Image, userLayer v1.Layer) (result, error) {
	img, err := mutate.Append(base, mutate.Addendum{Layer: userLayer})
	if err != nil {
		return result{}, err
	}
	tag := prefix + "/full:latest"
	defer d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	var ts []time.Duration
	var sent int64
	for range *oldRuns {
		t := time.Now()
		st, err := d.Load(ctx, img, tag, nil)
		if err != nil {
			return result{}, err
		}
		ts = append(ts, time.Since(t))
		sent = st.Sent
	}
	return result{name: "full docker load of the result", median: median(ts), n: len(ts), note: fmt.Sprintf("%.2f GB streamed", float64(sent)/1e9)}, nil
}

// timeCmd runs cmd (a fresh copy each time) and returns its wall time and
// peak RSS.
func timeCmd(c *exec.Cmd) (time.Duration, int64, error) {
	cmd := exec.Command(c.Path, c.Args[1:]...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	t := time.Now()
	out, err := cmd.CombinedOutput()
	el := time.Since(t)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w\n%s", strings.Join(c.Args, " "), err, out)
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	return el, rss, nil
}

func buildDS01() (string, error) {
	dir, err := os.MkdirTemp("", "ds01bench-bin-")
	if err != nil {
		return "", err
	}
	os.Chmod(dir, 0o755) // the service bench's user runs it
	bin := filepath.Join(dir, "ds01")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/ds01").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ds01 (run from the repository root): %w\n%s", err, out)
	}
	return bin, nil
}

func median(ts []time.Duration) time.Duration {
	s := slices.Clone(ts)
	slices.Sort(s)
	return s[len(s)/2]
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, errors.New("-sizes takes sizes like 0.5G or 512M")
	}
	return int64(f * float64(mult)), nil
}

func nproc() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// deployBench measures container deploy of a labelled image against a bare
// docker create with the same options, and the whole journey (image,
// container, first command) against docker build + docker run.
func deployBench(ctx context.Context, d *deploy.Daemon, bin string, env []string, project, baseTag, tmp string) ([]result, error) {
	ws := filepath.Join(tmp, "ws")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return nil, err
	}
	// On a hardened host's filesystem (nosuid,nodev), where the setuid
	// rule passes, as a deploy for a user must.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "nosuid,nodev,size=64m", "ds01bench-ws", ws).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mounting the workspace tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", "-l", ws).Run()
	cname := project + "._.1722830498"
	rm := func() { exec.Command("docker", "rm", "-f", cname).Run() }
	defer rm()
	who := []string{"--user", "h.baker@hertie-school.lan", "--uid", "1722830498", "--gid", "1722830498"}
	// --memlock 8m: this sandbox's daemon may not raise the limit (no
	// CAP_SYS_RESOURCE); the same limit is given to docker create.
	deployCmd := exec.Command(bin, append(who, "container", "deploy", project, "--workspace", ws, "--memlock", "8m")...)
	deployCmd.Env = env
	image := fmt.Sprintf("ds01-1722830498/%s:latest", project)
	createArgs := []string{"create", "--name", cname, "-it", "--user", "1722830498:1722830498", "--group-add", "video",
		"--ipc", "private", "--shm-size", strconv.FormatInt(deploy.DefaultShmSize(), 10), "--cap-drop", "MKNOD", "--cap-drop", "SETFCAP",
		"--ulimit", "memlock=8388608", "--ulimit", "stack=67108864", "-w", "/workspace", "-v", ws + ":/workspace", "--hostname", project,
		"--label", "ds01.managed=true", image}
	var tDeploy, tCreate []time.Duration
	for range *runs {
		t, _, err := timeCmd(deployCmd)
		if err != nil {
			return nil, err
		}
		tDeploy = append(tDeploy, t)
		rm()
		t, _, err = timeCmd(exec.Command("docker", createArgs...))
		if err != nil {
			return nil, err
		}
		tCreate = append(tCreate, t)
		rm()
	}
	rs := []result{
		{name: "ds01 container deploy (labelled image)", median: median(tDeploy), n: len(tDeploy),
			note: fmt.Sprintf("%.2f× bare docker create; no image made", float64(median(tDeploy))/float64(median(tCreate)))},
		{name: "docker create, same options (CLI)", median: median(tCreate), n: len(tCreate), note: "the floor for deploy"},
	}

	// The journey: an image for a new user, a running container, one
	// command in it.
	var tJourney, tOld []time.Duration
	for i := range *oldRuns {
		t := time.Now()
		c := exec.Command(bin, append(who, "image", "create", project, "--base", baseTag, "--force")...)
		c.Env = append(env, fmt.Sprintf("SOURCE_DATE_EPOCH=%d", 1750000000+i))
		if out, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s", out)
		}
		c = exec.Command(bin, append(who, "container", "deploy", project, "--workspace", ws, "--memlock", "8m", "--start")...)
		c.Env = env
		if out, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s", out)
		}
		if out, err := exec.Command("docker", "exec", cname, "id", "-un").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "h-baker" {
			return nil, fmt.Errorf("first command: %v %s", err, out)
		}
		tJourney = append(tJourney, time.Since(t))
		rm()
	}
	dir := filepath.Join(tmp, "build")
	os.MkdirAll(dir, 0o755)
	df := fmt.Sprintf("FROM %s\nRUN groupadd -g 1722830498 h-baker && useradd -l -u 1722830498 -g 1722830498 -m -s /bin/bash h-baker && echo 'h-baker ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ds01-h-baker\n", baseTag)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644)
	built := prefix + "/journey:latest"
	defer d.ImageRemove(ctx, built, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	for range *oldRuns {
		t := time.Now()
		b := exec.Command("docker", "build", "--no-cache", "-q", "-t", built, dir)
		b.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		if out, err := b.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("docker build: %s", out)
		}
		args := slices.Clone(createArgs)
		args[len(args)-1] = built
		args[0] = "run"
		args = append(args[:1], append([]string{"-d"}, args[1:]...)...)
		if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("docker run: %s", out)
		}
		if out, err := exec.Command("docker", "exec", cname, "id", "-un").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "h-baker" {
			return nil, fmt.Errorf("first command: %v %s", err, out)
		}
		tOld = append(tOld, time.Since(t))
		rm()
		d.ImageRemove(ctx, built, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	}
	return append(rs,
		result{name: "journey: image create + container deploy --start + first command", median: median(tJourney), n: len(tJourney),
			note: fmt.Sprintf("%.1f× faster than docker build + docker run", float64(median(tOld))/float64(median(tJourney)))},
		result{name: "journey: docker build + docker run + first command", median: median(tOld), n: len(tOld)},
	), nil
}

// pullBench pulls the base from a loopback registry into an empty cache
// with ds01 base pull, and with skopeo copy into an OCI layout.
func pullBench(ctx context.Context, bin string, base v1.Image) ([]result, error) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		return []result{{name: "skopeo copy: not installed (apt-get install skopeo)"}}, nil
	}
	dir, err := os.MkdirTemp("", "ds01bench-pull-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r, err := testbed.StartRegistryIn(filepath.Join(dir, "registry"))
	if err != nil {
		return nil, err
	}
	defer r.Stop()
	ref := r.Host + "/" + prefix + "/pull:latest"
	nref, _ := name.ParseReference(ref)
	if err := remote.Write(nref, base); err != nil {
		return nil, err
	}
	size := int64(0)
	if m, err := base.Manifest(); err == nil {
		for _, l := range m.Layers {
			size += l.Size
		}
	}
	var tDS, tSK []time.Duration
	for i := range *oldRuns {
		cache := filepath.Join(dir, fmt.Sprintf("cache-%d", i))
		c := exec.Command(bin, "base", "pull", "--quiet", ref)
		c.Env = append(os.Environ(), "DS01_CACHE="+cache)
		t, _, err := timeCmd(c)
		if err != nil {
			return nil, err
		}
		tDS = append(tDS, t)
		os.RemoveAll(cache)
		oci := filepath.Join(dir, fmt.Sprintf("oci-%d", i))
		t, _, err = timeCmd(exec.Command("skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, "oci:"+oci+":latest"))
		if err != nil {
			return nil, err
		}
		tSK = append(tSK, t)
		os.RemoveAll(oci)
	}
	rate := func(d time.Duration) string { return fmt.Sprintf("%.0f MB/s", float64(size)/d.Seconds()/1e6) }
	return []result{
		{name: "ds01 base pull (empty cache, loopback registry)", median: median(tDS), n: len(tDS),
			note: fmt.Sprintf("%s; %.2f× skopeo's time", rate(median(tDS)), float64(median(tDS))/float64(median(tSK)))},
		{name: "skopeo copy docker:// → oci: (same registry)", median: median(tSK), n: len(tSK), note: rate(median(tSK))},
	}, nil
}

// packageSetLabel describes the synthetic package set: about the size of
// the data-science preset (pandas, scipy, scikit-learn, matplotlib and
// numpy: some 250 MB and 15 000 files installed), in five wheels.
const packageSetLabel = "5 wheels, 15 000 modules, 200 MB installed"

// benchPackages compares a packaged image create from a warm local wheel
// directory with docker build of the seed's Dockerfile and the same pip
// line, and a second user's create (the shared layer reused) with a plain
// create.
func benchPackages(ctx context.Context, d *deploy.Daemon, bin string) ([]result, error) {
	dir, err := benchCache()
	if err != nil {
		return nil, err
	}
	img, err := registry.Bookworm.Image(ctx, dir)
	if err != nil {
		return nil, err
	}
	baseTag := prefix + "/bookworm:latest"
	if err := ensureLoaded(ctx, d, img, baseTag); err != nil {
		return nil, err
	}
	wheels := filepath.Join(dir, "bench-wheels-v1")
	if m, _ := filepath.Glob(filepath.Join(wheels, "*.whl")); len(m) == 0 {
		src, err := os.MkdirTemp("", "ds01bench-src-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(src)
		if err := writeBenchPackages(src); err != nil {
			return nil, err
		}
		t := time.Now()
		if err := testbed.BuildWheels(ctx, d, baseTag, src, wheels); err != nil {
			return nil, err
		}
		fmt.Printf("built the bench wheels once in %s\n", time.Since(t).Round(time.Millisecond))
	}
	specs := []string{}
	for i := range 5 {
		specs = append(specs, fmt.Sprintf("ds01bench-pkg%d", i))
	}
	tmp, err := os.MkdirTemp("", "ds01bench-pk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	who := func(uid int) []string {
		return []string{"--user", fmt.Sprintf("u%d", uid), "--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(uid)}
	}
	pkgArgs := []string{"--base", baseTag, "--wheels", wheels, "--no-index"}
	for _, s := range specs {
		pkgArgs = append(pkgArgs, "--pip", s)
	}
	run := func(uid int, cache string, extra ...string) (time.Duration, error) {
		c := exec.Command(bin, append(append(who(uid), "image", "create", "benchpk", "--force"), extra...)...)
		c.Env = append(os.Environ(), "DS01_CONFIG="+filepath.Join(tmp, "config", strconv.Itoa(uid)), "DS01_CACHE="+cache)
		t, _, err := timeCmd(c)
		return t, err
	}
	defer func() {
		res, _ := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", "ds01-packages/*")})
		for _, im := range res.Items {
			for _, tag := range im.RepoTags {
				d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true})
			}
		}
		for _, uid := range []int{30000, 30001, 30002} {
			d.ImageRemove(ctx, fmt.Sprintf("ds01-%d/benchpk:latest", uid), client.ImageRemoveOptions{Force: true})
		}
	}()
	var install, reuse, plain, build []time.Duration
	for i := range *oldRuns {
		cache := filepath.Join(tmp, fmt.Sprintf("cache-%d", i))
		t, err := run(30000, cache, pkgArgs...) // installs: a cold package cache
		if err != nil {
			return nil, err
		}
		install = append(install, t)
		if t, err = run(30001, cache, pkgArgs...); err != nil { // a second user: reused
			return nil, err
		}
		reuse = append(reuse, t)
		// No packages, on a base whose files are indexed already, like the
		// second user's base + packages.
		if _, err = run(30002, cache, "--base", baseTag); err != nil {
			return nil, err
		}
		// Another new user: a new user layer, as for the second user above.
		if t, err = run(30003+i, cache, "--base", baseTag); err != nil {
			return nil, err
		}
		plain = append(plain, t)
		d.ImageRemove(ctx, fmt.Sprintf("ds01-%d/benchpk:latest", 30003+i), client.ImageRemoveOptions{Force: true})
		res, _ := d.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", "ds01-packages/*")})
		for _, im := range res.Items {
			for _, tag := range im.RepoTags {
				d.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true})
			}
		}
	}
	// docker build of the seed's Dockerfile with the same pip line and the
	// same wheel directory in its context.
	ctxDir := filepath.Join(tmp, "build")
	if err := os.CopyFS(filepath.Join(ctxDir, "wheels"), os.DirFS(wheels)); err != nil {
		return nil, err
	}
	df := fmt.Sprintf(`FROM %s
COPY wheels /tmp/wheels
RUN python3 -m pip install --break-system-packages --no-cache-dir --no-index --find-links /tmp/wheels %s && rm -rf /tmp/wheels
RUN groupadd -g 30000 u30000 && useradd -l -u 30000 -g 30000 -m -s /bin/bash u30000 \
 && echo 'u30000 ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ds01-u30000 && : > /var/log/lastlog && : > /var/log/faillog
LABEL aime.mlc.DS01_HAS_USER_SETUP=true aime.mlc.DS01_USER_ID=30000 aime.mlc.DS01_GROUP_ID=30000 aime.mlc.DS01_USERNAME=u30000
USER 30000
WORKDIR /workspace
`, baseTag, strings.Join(specs, " "))
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return nil, err
	}
	built := prefix + "/pk-built:latest"
	for range *oldRuns {
		c := exec.Command("docker", "build", "--no-cache", "-q", "-t", built, ctxDir)
		c.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		t, _, err := timeCmd(c)
		if err != nil {
			return nil, err
		}
		build = append(build, t)
		d.ImageRemove(ctx, built, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	}
	return []result{
		{name: "image create with packages (install, warm wheel dir)", median: median(install), n: len(install),
			note: fmt.Sprintf("%.1f× faster than docker build", float64(median(build))/float64(median(install)))},
		{name: "docker build, same pip line and wheel dir", median: median(build), n: len(build)},
		{name: "image create, second user, same packages", median: median(reuse), n: len(reuse),
			note: fmt.Sprintf("shared layer reused: %.2f× a plain create", float64(median(reuse))/float64(median(plain)))},
		{name: "image create, no packages", median: median(plain), n: len(plain)},
	}, nil
}

// writeBenchPackages writes five pure-Python packages of 3 000 modules
// each, with a 30 MB data file, for pip wheel.
func writeBenchPackages(dir string) error {
	var s [32]byte
	r := rand.NewChaCha8(s)
	for i := range 5 {
		name := fmt.Sprintf("ds01bench-pkg%d", i)
		mod := strings.ReplaceAll(name, "-", "_")
		pkg := filepath.Join(dir, name, mod)
		if err := os.MkdirAll(pkg, 0o755); err != nil {
			return err
		}
		py := fmt.Sprintf("[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = %q\nversion = \"1.0.0\"\n\n[tool.setuptools.package-data]\n%s = [\"*.bin\"]\n", name, mod)
		if err := os.WriteFile(filepath.Join(dir, name, "pyproject.toml"), []byte(py), 0o644); err != nil {
			return err
		}
		os.WriteFile(filepath.Join(pkg, "__init__.py"), []byte("VERSION = '1.0.0'\n"), 0o644)
		for j := range 3000 {
			body := fmt.Sprintf("# module %d of %s\n\n\ndef f%d(x):\n    return x + %d\n", j, name, j, j) + strings.Repeat("# padding to a typical module size\n", 100)
			if err := os.WriteFile(filepath.Join(pkg, fmt.Sprintf("m%04d.py", j)), []byte(body), 0o644); err != nil {
				return err
			}
		}
		data := make([]byte, 30<<20)
		r.Read(data)
		if err := os.WriteFile(filepath.Join(pkg, "weights.bin"), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchContainerd measures image create against a full re-send on each
// engine with the containerd image store, for each size.
func benchContainerd(ctx context.Context, d *deploy.Daemon) error {
	for _, name := range strings.Split(*engine, ",") {
		i := slices.IndexFunc(testbed.Engines, func(e testbed.Engine) bool { return e.Name == name })
		if i < 0 {
			return fmt.Errorf("-engines: no engine %q; want sid or trixie", name)
		}
		if err := benchEngine(ctx, d, testbed.Engines[i]); err != nil {
			return err
		}
	}
	return nil
}

func benchEngine(ctx context.Context, d *deploy.Daemon, e testbed.Engine) error {
	dir, err := benchCache()
	if err != nil {
		return err
	}
	state, err := os.MkdirTemp("", "ds01bench-containerd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	ce, stop, err := testbed.StartContainerdEngine(ctx, d, e, dir, state, prefix)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("\nsecond engine: Debian %s's Docker, API %s, %s store (%s)\n", e.Name, ce.APIVersion, ce.Store, ce.Driver)
	for _, label := range strings.Split(*sizes, ",") {
		size, err := parseSize(label)
		if err != nil {
			return err
		}
		img, err := syntheticBase(ctx, size)
		if err != nil {
			return err
		}
		cache, err := registry.OpenCache(filepath.Join(state, "cache-"+label))
		if err != nil {
			return err
		}
		ref := "localhost:5000/" + prefix + "/base-" + strings.ToLower(label) + ":latest"
		if err := cache.Put(ref, img); err != nil {
			return err
		}
		req := func(i int) pipeline.CreateRequest {
			return pipeline.CreateRequest{Login: "h.baker@hertie-school.lan", Account: acct, Project: "bench", BaseRef: ref, Replace: true,
				Created: time.Unix(int64(1700000000+i), 0), Cache: cache, Resolve: source.ResolveOptions{Cache: cache, Offline: true}}
		}
		t := time.Now()
		first, err := ce.Images.Create(ctx, req(-1))
		if err != nil {
			return err
		}
		firstT := time.Since(t)
		var creates []time.Duration
		var sent int64
		for i := range *runs {
			t := time.Now()
			res, err := ce.Images.Create(ctx, req(i))
			if err != nil {
				return err
			}
			creates = append(creates, time.Since(t))
			sent = res.Sent
		}
		// The same kind of image sent whole.
		files, err := assemble.Files(img)
		if err != nil {
			return err
		}
		var full []time.Duration
		var fullSent int64
		for i := range *oldRuns {
			built, err := assemble.Image(img, files, assemble.Options{Account: acct, Created: time.Unix(int64(1710000000+i), 0)})
			if err != nil {
				return err
			}
			t := time.Now()
			st, err := ce.Load(ctx, built.Image, prefix+"/full:latest", nil)
			if err != nil {
				return err
			}
			full = append(full, time.Since(t))
			fullSent = st.Sent
		}
		fmt.Printf("base %s on the containerd store:\n  first image create (base streamed in once, %.2f GB): %s\n  image create (delta, %d bytes sent): median %s of %d\n  full re-send (%.2f GB): median %s of %d, %.0f× image create\n",
			label, float64(first.Resolution.Loaded)/1e9, firstT.Round(time.Millisecond), sent, median(creates).Round(time.Millisecond), len(creates),
			float64(fullSent)/1e9, median(full).Round(time.Millisecond), len(full), float64(median(full))/float64(median(creates)))
	}
	return nil
}
