package cluster

import (
	"errors"
	"fmt"
	"net"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Forbidden is the cluster's RBAC refusing the user something.
type Forbidden struct {
	Doing, Namespace string
	Err              error
}

func (e *Forbidden) Error() string {
	return fmt.Sprintf("Kubernetes refused %s in namespace %s: your account may not (RBAC: %v); ask the cluster's administrator for a RoleBinding there, or give --namespace with one you may use", e.Doing, e.Namespace, apiMessage(e.Err))
}

func (e *Forbidden) Unwrap() error { return e.Err }

// Refused is the namespace's admission refusing a workload RBAC let the
// user create: its quota, or its Pod Security level. Both answer 403 as
// RBAC does, and call for other advice.
type Refused struct {
	By        string // "quota" or "pod security"
	Namespace string
	Err       error
}

func (e *Refused) Error() string {
	if e.By == "quota" {
		return fmt.Sprintf("the quota of namespace %s refuses it (%s): retire one of your workloads there (ds01 container list --on k8s), ask for fewer GPUs, or ask the cluster's administrator for a larger quota", e.Namespace, apiMessage(e.Err))
	}
	return fmt.Sprintf("the Pod Security level of namespace %s refuses the manifest (%s): of what ds01 puts in, only the administrator's workspace_path (a hostPath) and allow_privilege_escalation go beyond the restricted level; ask the administrator for workspace_claim instead, or for a namespace whose level allows them", e.Namespace, apiMessage(e.Err))
}

func (e *Refused) Unwrap() error { return e.Err }

// Pending is a workload the scheduler has not placed, with its reason.
type Pending struct {
	Name, Namespace string
	// Reason and Message are the scheduler's (Unschedulable, "0/2 nodes
	// are available: 2 Insufficient nvidia.com/gpu. …"); empty when it
	// has said nothing yet.
	Reason, Message string
}

func (e *Pending) Error() string {
	why := "the scheduler has not placed it yet"
	if e.Message != "" {
		why = "the scheduler says: " + strings.TrimRight(e.Message, ". ")
	}
	return fmt.Sprintf("%s is Pending in namespace %s: %s. It stays queued and starts when a node can take it; ds01 container retire --on k8s withdraws it", e.Name, e.Namespace, why)
}

// PullFailed is a node that could not pull the image.
type PullFailed struct {
	Image, Node, Reason, Message string
}

func (e *PullFailed) Error() string {
	return fmt.Sprintf("the cluster could not pull %s on node %s (%s: %s); the workload was removed. Check that the cluster can reach that registry (push there with ds01 image push PROJECT --to REPO) and has its credentials (the administrator's image_pull_secret)", e.Image, e.Node, e.Reason, e.Message)
}

// Failed is a workload whose container ended in error before it was up.
type Failed struct {
	Name, Reason, Message string
	ExitCode              int32
}

func (e *Failed) Error() string {
	return fmt.Sprintf("%s failed: %s (exit code %d) %s", e.Name, e.Reason, e.ExitCode, e.Message)
}

// explain turns an API error into the user's terms; doing is what was
// asked ("create pods").
func (c *Cluster) explain(err error, doing string) error {
	if err == nil {
		return nil
	}
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(apiMessage(err), "exceeded quota"):
		return &Refused{By: "quota", Namespace: c.Namespace, Err: err}
	case apierrors.IsForbidden(err) && strings.Contains(apiMessage(err), "violates PodSecurity"):
		return &Refused{By: "pod security", Namespace: c.Namespace, Err: err}
	case apierrors.IsForbidden(err):
		return &Forbidden{Doing: doing, Namespace: c.Namespace, Err: err}
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the cluster at %s did not accept your credentials (kubeconfig context %q): %w; renew them or ask its administrator", c.Server, c.Context, err)
	case isUnreachable(err):
		return fmt.Errorf("cannot reach the cluster at %s (kubeconfig context %q): %w", c.Server, c.Context, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// transient are errors a poll goes on through.
func transient(err error) bool {
	return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || isUnreachable(err)
}

func isUnreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns)
}

// apiMessage is the API server's own sentence, without the Go wrapping.
func apiMessage(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return strings.TrimSpace(st.Status().Message)
	}
	return err.Error()
}
