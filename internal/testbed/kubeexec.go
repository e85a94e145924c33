package testbed

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/yaml"
)

var (
	crdResource         = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	clusterExecResource = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "clusterexecs"}
)

// AllowExec lets exec into the containers of ns's pods work, through the
// API server (with its RBAC: pods/exec) and kwok, which plays the
// kubelet: the command runs on this machine, as uid:gid, in a new
// directory owned by them (HOME is it too), whose path is returned. There
// are no containers; what a command sees is the host. kwok's kubelet port
// has no authentication, so while the test runs any local process can
// run commands there as uid:gid in ns's pods: uid and gid must be a
// test's own user's, and never root's. It returns once kwok runs commands
// for ns.
func (k *Kube) AllowExec(t testing.TB, ns string, uid, gid int) string {
	t.Helper()
	if uid <= 0 || gid <= 0 {
		t.Fatalf("AllowExec(%q, %d, %d): exec runs unauthenticated on this machine, so only as a test's own user, never as root", ns, uid, gid)
	}
	dir, err := os.MkdirTemp(k.Dir, "exec-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	ce := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterExec",
		"metadata": map[string]any{"generateName": "ds01test-exec-"},
		"spec": map[string]any{
			"selector": map[string]any{"matchNamespaces": []any{ns}},
			"execs": []any{map[string]any{"local": map[string]any{
				"workDir":         dir,
				"envs":            []any{map[string]any{"name": "HOME", "value": dir}},
				"securityContext": map[string]any{"runAsUser": int64(uid), "runAsGroup": int64(gid)},
			}}},
		},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := dynamic.NewForConfig(k.admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Resource(clusterExecResource).Create(ctx, ce, metav1.CreateOptions{}); err != nil {
		t.Fatalf("allowing exec in %s: %v", ns, err)
	}
	// kwok reads ClusterExecs through an informer: a moment later. Its
	// rules name no pod, so a pod that does not exist shows when they
	// are in force.
	if err := k.waitFor(ctx, "kwok to allow exec in "+ns, func(ctx context.Context) error { return k.kwokExec(ctx, ns) }); err != nil {
		t.Fatal(err)
	}
	return dir
}

// kwokExec runs true in a pod of ns, at kwok's kubelet API directly.
func (k *Kube) kwokExec(ctx context.Context, ns string) error {
	cfg := &rest.Config{Host: k.kwokURL, TLSClientConfig: rest.TLSClientConfig{CAData: k.ca.certPEM}}
	u, err := url.Parse(fmt.Sprintf("%s/exec/%s/ds01-probe/probe?command=true&output=1&error=1", k.kwokURL, url.PathEscape(ns)))
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
}

// installExecCRD defines kwok's ClusterExec resource (kwok watches it
// from its start) and waits until it is served.
func (k *Kube) installExecCRD(ctx context.Context, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd unstructured.Unstructured
	if err := yaml.Unmarshal(b, &crd.Object); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	dc, err := dynamic.NewForConfig(k.admin)
	if err != nil {
		return err
	}
	if _, err := dc.Resource(crdResource).Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("defining ClusterExec: %w", err)
	}
	return k.waitFor(ctx, "ClusterExec to be established", func(ctx context.Context) error {
		got, err := dc.Resource(crdResource).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("not established: %v", conds)
	})
}
