package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// UserConfig writes a kubeconfig (mode 0600, owned by uid and gid when
// they are not negative, so that a real test user can read it)
// authenticating as Kubernetes user `user` in groups by a client
// certificate of the cluster's CA, its current context in namespace, and
// returns its path.
func (k *Kube) UserConfig(t testing.TB, user string, groups []string, namespace string, uid, gid int) string {
	t.Helper()
	cfg, err := k.ca.kubeconfig(k.Server, user, groups, namespace)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(filepath.Join(k.Dir, "users"), "kubeconfig-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(cfg); err != nil {
		t.Fatal(err)
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return f.Name()
}

// Grant makes namespace ns (if missing) with its "default" ServiceAccount
// (there is no controller-manager to make it, and without it the
// ServiceAccount admission plugin refuses every pod), binds user to the
// built-in ClusterRole "edit" in ns, and returns once the API server's
// authorizer lets user create pods there.
func (k *Kube) Grant(t testing.TB, user, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := k.Admin(t)
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the default service account of %s: %v", ns, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "ds01test-edit-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("binding %s to edit in %s: %v", user, ns, err)
	}
	// The RBAC authorizer sees the binding through an informer, a moment
	// later.
	err = k.waitFor(ctx, user+" to be allowed to create pods in "+ns, func(ctx context.Context) error {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: "create", Resource: "pods"}},
		}, metav1.CreateOptions{})
		if err == nil && !sar.Status.Allowed {
			err = fmt.Errorf("not yet allowed: %s", sar.Status.Reason)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Admin is a clientset with the admin's (system:masters) credentials.
func (k *Kube) Admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(k.admin)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// aggregateClusterRoles does once what the controller-manager's
// clusterrole-aggregation controller keeps doing: the built-in admin, edit
// and view roles are made empty, with an aggregation rule, and get their
// rules from the roles their selectors match (view's into edit's into
// admin's, hence the rounds until nothing changes).
func aggregateClusterRoles(ctx context.Context, cs kubernetes.Interface) error {
	for round := 0; round < 5; round++ {
		list, err := cs.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing cluster roles: %w", err)
		}
		changed := false
		for i := range list.Items {
			r := &list.Items[i]
			if r.AggregationRule == nil {
				continue
			}
			rules, err := aggregatedRules(r, list.Items)
			if err != nil {
				return err
			}
			if reflect.DeepEqual(rules, r.Rules) {
				continue
			}
			r.Rules, changed = rules, true
			if _, err := cs.RbacV1().ClusterRoles().Update(ctx, r, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("aggregating cluster role %s: %w", r.Name, err)
			}
		}
		if !changed {
			return nil
		}
	}
	return fmt.Errorf("cluster role aggregation did not settle")
}

// aggregatedRules is the union of the rules of the roles r's selectors
// match (by name within each selector, as the controller orders them).
func aggregatedRules(r *rbacv1.ClusterRole, all []rbacv1.ClusterRole) ([]rbacv1.PolicyRule, error) {
	rules := []rbacv1.PolicyRule{}
	for i := range r.AggregationRule.ClusterRoleSelectors {
		sel, err := metav1.LabelSelectorAsSelector(&r.AggregationRule.ClusterRoleSelectors[i])
		if err != nil {
			return nil, fmt.Errorf("cluster role %s: %w", r.Name, err)
		}
		var matched []rbacv1.ClusterRole
		for _, o := range all {
			if o.Name != r.Name && sel.Matches(labels.Set(o.Labels)) {
				matched = append(matched, o)
			}
		}
		sort.Slice(matched, func(a, b int) bool { return matched[a].Name < matched[b].Name })
		for _, o := range matched {
			for _, rule := range o.Rules {
				if !slices.ContainsFunc(rules, func(x rbacv1.PolicyRule) bool { return reflect.DeepEqual(x, rule) }) {
					rules = append(rules, rule)
				}
			}
		}
	}
	return rules, nil
}
