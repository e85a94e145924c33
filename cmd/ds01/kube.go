package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/ds01/ds01/deploy/kube/cluster"
	"github.com/ds01/ds01/identity"
	"github.com/ds01/ds01/internal/ops"
	"github.com/ds01/ds01/internal/serve/policy"
	"github.com/ds01/ds01/internal/termsafe"
)

// kubeFlags choose the cluster, as kubectl's do.
func kubeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "on", Usage: "where: local (this server's Docker) or k8s (the Kubernetes cluster of your kubeconfig)", Value: "local"},
		&cli.StringFlag{Name: "namespace", Usage: "with --on k8s: the namespace (default: your kubeconfig context's, else the administrator's)"},
		&cli.StringFlag{Name: "context", Usage: "with --on k8s: the kubeconfig context (default: its current one)"},
		&cli.StringFlag{Name: "kubeconfig", Usage: "with --on k8s: the kubeconfig `FILE` (default: $KUBECONFIG, else ~/.kube/config)"},
	}
}

// onKube says whether the command is for the cluster, and refuses the
// cluster's flags without --on k8s.
func onKube(cmd *cli.Command) (bool, error) {
	switch on := cmd.String("on"); on {
	case "k8s", "kubernetes":
		return true, nil
	case "local":
		for _, f := range []string{"namespace", "context", "kubeconfig", "job", "wait"} {
			if cmd.IsSet(f) {
				return false, usagef("--%s is for Kubernetes: add --on k8s", f)
			}
		}
		return false, nil
	default:
		return false, usagef("--on %q: give local (this server's Docker) or k8s", on)
	}
}

func kubeOptions(cmd *cli.Command) cluster.Options {
	return cluster.Options{Kubeconfig: cmd.String("kubeconfig"), Context: cmd.String("context"), Namespace: cmd.String("namespace")}
}

// kubeOps are the operations for the cluster: they need no Docker
// daemon, only the user's records and the administrator's settings.
func kubeOps(cmd *cli.Command) (identity.Identity, *ops.Ops, error) {
	id, err := caller(cmd)
	if err != nil {
		return id, nil, err
	}
	// Refused before the policy (DS01_POLICY, which sudo may pass) or
	// anything of the user's is read as root.
	if err := ops.KubeAllowed(id); err != nil {
		return id, nil, err
	}
	if err := id.CheckUser(); err != nil {
		return id, nil, usageError{err}
	}
	o, err := newOps(nil)
	if err != nil {
		return id, nil, err
	}
	o.Kube, err = kubeSettings()
	return id, o, err
}

// kubeSettings are the policy file's [kubernetes]: root's file, or the
// defaults where there is none.
func kubeSettings() (policy.Kubernetes, error) {
	p, err := readPolicy(os.Getenv("DS01_POLICY"))
	return p.Kubernetes, err
}

// localEngine is the help category of deploy's flags for this server's
// Docker, which --on k8s refuses.
const localEngine = "this server's Docker"

// dispatchKube runs run when the command is for the cluster; handled is
// false when it is for this server's engine.
func dispatchKube(ctx context.Context, cmd *cli.Command, run func(context.Context, *cli.Command) error) (handled bool, err error) {
	k, err := onKube(cmd)
	if err != nil || !k {
		return err != nil, err
	}
	return true, run(ctx, cmd)
}

func runKubeDeploy(ctx context.Context, cmd *cli.Command) error {
	for _, f := range cmd.Flags {
		if c, ok := f.(cli.CategorizableFlag); ok && c.GetCategory() == localEngine && cmd.IsSet(f.Names()[0]) {
			return usagef("--%s is for this server's Docker; on Kubernetes the image is your last push, and the workspace and limits are the administrator's settings and the cluster's", f.Names()[0])
		}
	}
	if cmd.NArg() < 1 {
		return usagef("%s --on k8s takes a NAME (your project), and with --job the command after --", cmd.FullName())
	}
	req := ops.KubeDeploy{
		Name: cmd.Args().First(), Cluster: kubeOptions(cmd), GPUs: cmd.String("gpus"),
		Job: cmd.Bool("job"), Command: cmd.Args().Tail(), DryRun: cmd.Bool("dry-run"), Wait: cmd.Duration("wait"),
	}
	if !req.Job && len(req.Command) > 0 {
		return usagef("a command after NAME runs as a Job: add --job (a Pod keeps the image's shell up for container open)")
	}
	id, o, err := kubeOps(cmd)
	if err != nil {
		return err
	}
	res, err := o.DeployKube(ctx, id, req, events(cmd))
	out := cmd.Root().Writer
	if err != nil {
		return err
	}
	if req.DryRun {
		_, err := out.Write(res.Manifest)
		return err
	}
	d := res.Deployed
	if !d.Started {
		fmt.Fprintf(out, "%s %s created in namespace %s from %s; the cluster has not started its pod yet (ds01 container list --on k8s shows it)\n", d.Kind, d.Object, d.Namespace, termsafe.Line(res.Image))
		return nil
	}
	fmt.Fprintf(out, "%s %s in namespace %s on node %s (%s) from %s\n", d.Kind, d.Object, d.Namespace, termsafe.Line(d.Node), termsafe.Line(d.Phase), termsafe.Line(res.Image))
	if d.Kind == "Pod" {
		fmt.Fprintf(out, "open it with: ds01 container open --on k8s %s\n", req.Name)
	}
	return nil
}

func runKubeList(ctx context.Context, cmd *cli.Command) error {
	if cmd.Bool("all") {
		return usagef("--all is for this server's containers; on Kubernetes ds01 lists yours, and the cluster's RBAC says who may see more (kubectl get pods -A)")
	}
	id, o, err := kubeOps(cmd)
	if err != nil {
		return err
	}
	ws, err := o.ListKube(ctx, id, kubeOptions(cmd))
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	if cmd.Bool("json") {
		return writeJSON(out, ws)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tNAMESPACE\tSTATUS\tNODE\tGPUS\tCREATED\tIMAGE")
	for _, w := range ws {
		l := termsafe.Line // the cluster's words
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l(w.Name), w.Kind, l(w.Namespace), l(w.Phase), l(w.Node), l(w.GPUs), w.Created.Format("2006-01-02 15:04"), l(w.Image))
	}
	return tw.Flush()
}

func runKubeRetire(ctx context.Context, cmd *cli.Command) error {
	if cmd.Bool("save") {
		return usagef("--save puts a local container's changes into its image; a workload on Kubernetes keeps its work in /workspace")
	}
	name, err := oneArg(cmd, "NAME")
	if err != nil {
		return err
	}
	id, o, err := kubeOps(cmd)
	if err != nil {
		return err
	}
	w, err := o.RetireKube(ctx, id, kubeOptions(cmd), name)
	if err != nil {
		return err
	}
	if w.Terminating {
		fmt.Fprintf(cmd.Root().Writer, "retiring %s %s in namespace %s: its node is still stopping it\n", w.Kind, w.Object, w.Namespace)
		return nil
	}
	fmt.Fprintf(cmd.Root().Writer, "retired %s %s in namespace %s\n", w.Kind, w.Object, w.Namespace)
	return nil
}

func runKubeOpen(ctx context.Context, cmd *cli.Command, name string, command []string) error {
	id, o, err := kubeOps(cmd)
	if err != nil {
		return err
	}
	s := cluster.Session{Command: command, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if isTerminal() {
		s.TTY = true
		s.Terminal = func() (remotecommand.TerminalSizeQueue, func(), error) { return rawTerminal(ctx) }
	}
	err = o.OpenKube(ctx, id, kubeOptions(cmd), name, s)
	var exit *cluster.ExitError
	if errors.As(err, &exit) {
		return cli.Exit("", exit.Code)
	}
	return err
}

// rawTerminal puts stdin into raw mode, as kubectl exec -it does, and
// tells the terminal's size on every SIGWINCH.
func rawTerminal(ctx context.Context) (sizes remotecommand.TerminalSizeQueue, restore func(), err error) {
	fd := int(os.Stdin.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, nil, fmt.Errorf("setting the terminal to raw mode: %w", err)
	}
	q := &sizeQueue{ch: make(chan remotecommand.TerminalSize, 1)}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	ctx, cancel := context.WithCancel(ctx)
	go q.follow(ctx, winch)
	return q, func() {
		cancel()
		signal.Stop(winch)
		term.Restore(fd, old)
	}, nil
}

type sizeQueue struct {
	ch chan remotecommand.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q.ch
	if !ok {
		return nil
	}
	return &s
}

func (q *sizeQueue) follow(ctx context.Context, winch <-chan os.Signal) {
	defer close(q.ch)
	for {
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			select {
			case q.ch <- remotecommand.TerminalSize{Width: uint16(w), Height: uint16(h)}:
			default: // the last size not yet taken is replaced by the next
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-winch:
		}
	}
}

// kubeDeployFlags are deploy's flags for the cluster only.
func kubeDeployFlags() []cli.Flag {
	return append(kubeFlags(),
		&cli.BoolFlag{Name: "job", Usage: "with --on k8s: run the command after -- once, as a Job, instead of a Pod to open"},
		&cli.DurationFlag{Name: "wait", Value: time.Minute, Usage: "with --on k8s: how long to wait for the scheduler and the node"},
	)
}
