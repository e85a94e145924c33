package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
)

// Session is one command run in a workload's pod, as kubectl exec runs
// it.
type Session struct {
	Command []string
	TTY     bool
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	// Terminal, when set, makes the caller's terminal raw once the pod
	// is found (not before: a raw terminal takes Ctrl-C away), telling
	// its size as it changes, until restore.
	Terminal func() (sizes remotecommand.TerminalSizeQueue, restore func(), err error)
}

// ExitError is the command's own non-zero exit status.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("the command exited with status %d", e.Code) }

// Exec runs the session in the workload's pod, over WebSocket, or SPDY
// where the API server (or a proxy) does not upgrade to it.
func (c *Cluster) Exec(ctx context.Context, w Workload, s Session) error {
	if w.Pod == "" || w.Phase != string(corev1.PodRunning) {
		return fmt.Errorf("%s is not running (%s): there is nothing to open yet", w.Name, w.Phase)
	}
	u := c.API.ExecURL(c.Namespace, w.Pod, &corev1.PodExecOptions{
		Container: "ds01", Command: s.Command, TTY: s.TTY,
		Stdin: s.Stdin != nil, Stdout: s.Stdout != nil, Stderr: s.Stderr != nil && !s.TTY,
	})
	stream := rest.CopyConfig(c.REST)
	stream.Timeout = 0 // an interactive shell lasts as long as the user likes
	ws, err := remotecommand.NewWebSocketExecutor(stream, "GET", u)
	if err != nil {
		return err
	}
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	spdy, err := remotecommand.NewSPDYExecutor(stream, "POST", pu)
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	opts := remotecommand.StreamOptions{Stdin: s.Stdin, Stdout: s.Stdout, Tty: s.TTY}
	if s.TTY && s.Terminal != nil {
		sizes, restore, err := s.Terminal()
		if err != nil {
			return err
		}
		defer restore()
		opts.TerminalSizeQueue = sizes
	}
	if !s.TTY {
		opts.Stderr = s.Stderr
	}
	err = ex.StreamWithContext(ctx, opts)
	var code utilexec.ExitError
	if errors.As(err, &code) {
		return &ExitError{Code: code.ExitStatus()}
	}
	return c.explain(err, "opening "+w.Name)
}
