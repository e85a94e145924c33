package testbed

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeGPU is the extended resource the simulated nodes offer, as NVIDIA's
// device plugin names it.
const KubeGPU corev1.ResourceName = "nvidia.com/gpu"

const (
	// kubeServiceCIDR is the service range; the API server's in-cluster
	// address is its first IP, kubeServiceIP.
	kubeServiceCIDR = "10.96.0.0/16"
	// kwokPodCIDR is where kwok takes the pods' IPs from.
	kwokPodCIDR = "10.244.0.0/16"
	// kwokNodeAnnotation marks the nodes this bed's kwok plays, and no
	// others.
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
)

var kubeServiceIP = net.IPv4(10, 96, 0, 1)

// KubeNode is one simulated node.
type KubeNode struct {
	Name string
	GPUs int
}

// Kube is a running control plane for one test: etcd, kube-apiserver,
// kube-scheduler and kwok (playing the nodes and their kubelets), all on
// loopback. There is no controller-manager: no Job or ReplicaSet
// controller, no garbage collector, no namespace deletion.
type Kube struct {
	Server      string // https://127.0.0.1:PORT
	AdminConfig string // path of a kubeconfig with system:masters credentials
	Dir         string // certificates, kubeconfigs, logs and etcd's data

	ca    *kubeCA
	admin *rest.Config
	etcd  string
	procs []*kubeProc
	pki   kubePKI
	// kwokURL is kwok's kubelet API (exec), on loopback.
	kwokURL string
}

// kubeProc is one process of the control plane, its output in log.
type kubeProc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartKube starts etcd, kube-apiserver (RBAC on), kube-scheduler and kwok
// managing the given nodes (created here with capacity and allocatable
// cpu, memory, pods and nvidia.com/gpu = GPUs, no taints), on free
// loopback ports in a temporary directory, and stops them all (and removes
// the directory) when the test ends. It returns when the API server is
// ready, the nodes are Ready and the scheduler is running. The binaries
// are built once per machine (see kubeBinaries); a binary that cannot be
// built or a control plane not ready in time fails the test, with the end
// of each process's log. Skipped under -short.
func StartKube(t testing.TB, nodes ...KubeNode) *Kube {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that needs a Kubernetes control plane")
	}
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd is not installed (apt-get install etcd-server; scripts/setup does): %v", err)
	}
	kubeDir, kwokDir := kubeBinaries(t), kwokBinary(t)
	start := time.Now()
	k, err := newKube()
	if err != nil {
		t.Fatalf("the test bed's Kubernetes control plane: %v", err)
	}
	t.Cleanup(func() { k.stop(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := k.start(ctx, etcdBin, kubeDir, kwokDir, nodes); err != nil {
		t.Fatalf("the test bed's Kubernetes control plane: %v\n%s", err, k.logTails(25))
	}
	t.Logf("Kubernetes %s control plane on %s ready in %s", kubeVersion, k.Server, time.Since(start).Round(10*time.Millisecond))
	return k
}

// newKube makes the directory, the keys and certificates and the admin
// kubeconfig. The directory is open to traversal (not listing): test
// users read their own kubeconfigs in it.
func newKube() (*Kube, error) {
	dir, err := os.MkdirTemp("", "ds01kube-")
	if err != nil {
		return nil, err
	}
	k := &Kube{Dir: dir, AdminConfig: filepath.Join(dir, "admin.kubeconfig")}
	if err := k.prepare(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return k, nil
}

func (k *Kube) prepare() error {
	for _, d := range []string{k.Dir, filepath.Join(k.Dir, "users")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	k.Server = fmt.Sprintf("https://127.0.0.1:%d", port)
	if k.ca, err = newKubeCA(); err != nil {
		return err
	}
	if k.pki, err = k.ca.writePKI(k.Dir, kubeServiceIP); err != nil {
		return err
	}
	cfg, err := k.ca.kubeconfig(k.Server, "ds01-testbed-admin", []string{"system:masters"}, "")
	if err != nil {
		return err
	}
	if err := os.WriteFile(k.AdminConfig, cfg, 0o600); err != nil {
		return err
	}
	if k.admin, err = clientcmd.RESTConfigFromKubeConfig(cfg); err != nil {
		return err
	}
	// Tests create objects in bursts; client-go's default 5 QPS would
	// make them wait on themselves.
	k.admin.QPS, k.admin.Burst = 200, 400
	return nil
}

// start brings the control plane up in order: etcd, the API server, then
// the scheduler and kwok, the nodes, and waits for them.
func (k *Kube) start(ctx context.Context, etcdBin, kubeDir, kwokDir string, nodes []KubeNode) error {
	if err := k.startEtcd(ctx, etcdBin); err != nil {
		return err
	}
	if err := k.startAPIServer(ctx, filepath.Join(kubeDir, "kube-apiserver")); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(k.admin)
	if err != nil {
		return err
	}
	if err := aggregateClusterRoles(ctx, cs); err != nil {
		return err
	}
	schedPort, err := k.startScheduler(filepath.Join(kubeDir, "kube-scheduler"))
	if err != nil {
		return err
	}
	if err := k.installExecCRD(ctx, filepath.Join(kwokDir, "clusterexecs.crd.yaml")); err != nil {
		return err
	}
	if err := k.startKwok(kwokDir); err != nil {
		return err
	}
	if err := k.createNodes(ctx, nodes); err != nil {
		return err
	}
	if err := k.waitFor(ctx, "the nodes to be Ready", func(ctx context.Context) error { return k.nodesReady(ctx, nodes) }); err != nil {
		return err
	}
	return k.waitFor(ctx, "kube-scheduler to be ready", func(ctx context.Context) error {
		return k.httpsOK(ctx, fmt.Sprintf("https://127.0.0.1:%d/readyz", schedPort))
	})
}

func (k *Kube) startEtcd(ctx context.Context, bin string) error {
	client, err := freePort()
	if err != nil {
		return err
	}
	peer, err := freePort()
	if err != nil {
		return err
	}
	k.etcd = fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	if _, err := k.run("etcd", bin, nil,
		"--name=ds01-testbed", "--data-dir="+filepath.Join(k.Dir, "etcd"),
		"--listen-client-urls="+k.etcd, "--advertise-client-urls="+k.etcd,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=ds01-testbed="+peerURL,
		"--logger=zap", "--log-level=warn"); err != nil {
		return err
	}
	return k.waitFor(ctx, "etcd to be healthy", func(ctx context.Context) error {
		b, err := get(ctx, http.DefaultClient, k.etcd+"/health")
		if err == nil && !bytes.Contains(b, []byte(`"health":"true"`)) {
			err = fmt.Errorf("etcd /health: %s", b)
		}
		return err
	})
}

func (k *Kube) startAPIServer(ctx context.Context, bin string) error {
	port := k.Server[strings.LastIndex(k.Server, ":")+1:]
	if _, err := k.run("kube-apiserver", bin, nil,
		"--etcd-servers="+k.etcd,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+port,
		"--tls-cert-file="+k.pki.cert, "--tls-private-key-file="+k.pki.key, "--client-ca-file="+k.pki.ca,
		"--service-account-key-file="+k.pki.serviceAccountKey, "--service-account-signing-key-file="+k.pki.serviceAccountKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+kubeServiceCIDR,
		"--authorization-mode=Node,RBAC",
		// exec and logs go to kwok's kubelet API, at the node's
		// InternalIP (its Hostname resolves to nothing), checked against
		// the bed's CA.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority="+k.pki.ca,
		"--kubelet-client-certificate="+k.pki.kubeletCert, "--kubelet-client-key="+k.pki.kubeletKey,
		// The admission plugin taints every new node not-ready; the
		// node lifecycle controller, which would lift the taint once
		// kwok reports the node Ready, is in the controller-manager
		// this bed does not run.
		"--disable-admission-plugins=TaintNodesByCondition",
		// The endpoints of the kubernetes service would be 127.0.0.1,
		// which Endpoints validation refuses (loopback), every 10 s.
		"--endpoint-reconciler-type=none",
		// Reads straight from etcd, one layer less and about 15 MB less
		// memory (the start is as fast either way). Debian's etcd 3.4.23
		// predates the progress-notify fix (3.4.31) the cache's
		// consistent reads need, so those would go to etcd anyway.
		"--watch-cache=false",
		"--profiling=false",
		"--cert-dir="+filepath.Join(k.Dir, "apiserver")); err != nil {
		return err
	}
	hc, err := rest.HTTPClientFor(k.admin)
	if err != nil {
		return err
	}
	return k.waitFor(ctx, "kube-apiserver to be ready", func(ctx context.Context) error {
		_, err := get(ctx, hc, k.Server+"/readyz")
		return err
	})
}

// startScheduler starts kube-scheduler's default profile and returns its
// port, where it serves /readyz with the API server's certificate.
func (k *Kube) startScheduler(bin string) (int, error) {
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	_, err = k.run("kube-scheduler", bin, nil,
		"--kubeconfig="+k.AdminConfig,
		"--authentication-kubeconfig="+k.AdminConfig, "--authorization-kubeconfig="+k.AdminConfig,
		// Its /readyz is all that is asked of its server, and anonymous:
		// no need for the front-proxy CA the API server has none of.
		"--authentication-skip-lookup",
		"--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file="+k.pki.cert, "--tls-private-key-file="+k.pki.key)
	return port, err
}

// startKwok starts kwok on the nodes annotated as this bed's, with the
// stages kept beside its binary, its kubelet API (exec) on a loopback
// port with the bed's serving certificate, and exec rules read from the
// ClusterExec resources (AllowExec). Its HOME is the bed's directory, so
// that a ~/.kwok/kwok.yaml of the machine's user is not read.
func (k *Kube) startKwok(dir string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	k.kwokURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	_, err = k.run("kwok", filepath.Join(dir, "kwok"), []string{"HOME=" + k.Dir},
		"--kubeconfig="+k.AdminConfig,
		"--config="+filepath.Join(dir, "stages.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		"--cidr="+kwokPodCIDR, "--node-ip=127.0.0.1",
		fmt.Sprintf("--server-address=127.0.0.1:%d", port), fmt.Sprintf("--node-port=%d", port),
		"--tls-cert-file="+k.pki.cert, "--tls-private-key-file="+k.pki.key,
		"--enable-crds=ClusterExec")
	return err
}

func (k *Kube) createNodes(ctx context.Context, nodes []KubeNode) error {
	cs, err := kubernetes.NewForConfig(k.admin)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		res := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("64"),
			corev1.ResourceMemory: resource.MustParse("512Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
			KubeGPU:               *resource.NewQuantity(int64(n.GPUs), resource.DecimalSI),
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: n.Name,
				Labels: map[string]string{"type": "kwok", "kubernetes.io/hostname": n.Name,
					"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
				Annotations: map[string]string{kwokNodeAnnotation: "fake"},
			},
			// A node's status may be given at creation; kwok keeps the
			// capacity it finds and adds the conditions.
			Status: corev1.NodeStatus{Capacity: res, Allocatable: res},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", n.Name, err)
		}
	}
	return nil
}

func (k *Kube) nodesReady(ctx context.Context, nodes []KubeNode) error {
	cs, err := kubernetes.NewForConfig(k.admin)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := false
		for _, c := range node.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
		}
		if !ready {
			return fmt.Errorf("node %s is not Ready: %v", n.Name, node.Status.Conditions)
		}
	}
	return nil
}

// httpsOK gets url, trusting the bed's CA only.
func (k *Kube) httpsOK(ctx context.Context, url string) error {
	pool := x509.NewCertPool()
	pool.AddCert(k.ca.cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	_, err := get(ctx, hc, url)
	return err
}

// get returns the body of url when it answers 200.
func get(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(b.String()))
	}
	return b.Bytes(), nil
}

// run starts one process of the control plane, its output to NAME.log.
func (k *Kube) run(name, bin string, env []string, args ...string) (*kubeProc, error) {
	p := &kubeProc{name: name, log: filepath.Join(k.Dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = k.Dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// A test binary killed by its timeout takes the control plane with
	// it, rather than leaving it running on the machine.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	k.procs = append(k.procs, p)
	return p, nil
}

// waitFor polls ready until it succeeds, a process of the control plane
// exits, or ctx ends.
func (k *Kube) waitFor(ctx context.Context, what string, ready func(context.Context) error) error {
	for {
		last := ready(ctx)
		if last == nil {
			return nil
		}
		for _, p := range k.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited (%v) while waiting for %s", p.name, p.cmd.ProcessState, what)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %v", what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop kills the processes, newest first (nothing of theirs needs to
// survive), and removes the directory. A failed test's log shows the end
// of each process's log first.
func (k *Kube) stop(t testing.TB) {
	if t.Failed() {
		t.Logf("the Kubernetes control plane's logs:\n%s", k.logTails(10))
	}
	for i := len(k.procs) - 1; i >= 0; i-- {
		p := k.procs[i]
		p.cmd.Process.Kill()
		<-p.done
	}
	os.RemoveAll(k.Dir)
}

// logTails is the last n lines of each process's log.
func (k *Kube) logTails(n int) string {
	var b strings.Builder
	for _, p := range k.procs {
		data, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", p.name, p.log, strings.Join(lines, "\n"))
	}
	return b.String()
}

// freePort is a loopback TCP port free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
