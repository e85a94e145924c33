// Package cluster is a user's ds01 workloads on a Kubernetes cluster,
// reached with the user's own kubeconfig as kubectl finds it: create one
// and wait until the scheduler has placed it (or says why not), list,
// find, open and remove them. What a user may do there is the cluster's
// to decide (RBAC, quotas, Pod Security admission); this package says
// what the cluster decided in the user's terms.
package cluster

import (
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options say which kubeconfig, context and namespace to use; empty
// fields follow kubectl's rules ($KUBECONFIG, else ~/.kube/config; the
// current context; its namespace).
type Options struct {
	Kubeconfig, Context, Namespace string
	// DefaultNamespace is used when neither Namespace nor the context
	// names one (the administrator's setting); "" is "default".
	DefaultNamespace string
}

// Cluster is one cluster, as one user reaches it.
type Cluster struct {
	API       API
	REST      *rest.Config
	Namespace string
	// Server and Context are for messages.
	Server, Context string
}

// callTimeout bounds each call but exec's stream.
const callTimeout = 30 * time.Second

// ErrNoKubeconfig is a user without a kubeconfig that names a cluster.
var ErrNoKubeconfig = errors.New("no kubeconfig: ds01 looks where kubectl does ($KUBECONFIG, else ~/.kube/config, or --kubeconfig FILE) and found none that names a cluster; ask the cluster's administrator for yours")

// Connect loads the kubeconfig and makes a client; it does not call the
// cluster yet.
func Connect(o Options) (*Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		if _, err := os.Stat(o.Kubeconfig); err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		rules.ExplicitPath = o.Kubeconfig
	}
	over := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, over)
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, ErrNoKubeconfig
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "ds01"
	// An API server that takes the connection and never answers must not
	// hang a command; exec streams take a copy without it.
	if cfg.Timeout == 0 {
		cfg.Timeout = callTimeout
	}
	ns := o.Namespace
	if ns == "" {
		if n, explicit, err := cc.Namespace(); err == nil && explicit {
			ns = n
		}
	}
	if ns == "" {
		ns = o.DefaultNamespace
	}
	if ns == "" {
		ns = "default"
	}
	api, err := newRESTAPI(cfg)
	if err != nil {
		return nil, err
	}
	name := o.Context
	if name == "" {
		name = raw.CurrentContext
	}
	return &Cluster{API: api, REST: cfg, Namespace: ns, Server: cfg.Host, Context: name}, nil
}
