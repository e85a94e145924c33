//go:build tools

// Package kubebuild pins the Kubernetes release whose kube-apiserver and
// kube-scheduler the test bed runs (internal/testbed builds them from
// here, once per machine). It is a module of its own, outside ds01's
// ./...: k8s.io/kubernetes replaces its staging modules with ./staging
// paths, which only a go.mod of this shape (each k8s.io/X => k8s.io/X
// v0.37.2) can resolve from the module proxy.
package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
