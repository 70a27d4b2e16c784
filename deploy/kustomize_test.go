package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The kustomize base (deploy/kubernetes) and its optional components
// (deploy/kubernetes/components), built with kustomize's own Go packages as
// `kustomize build` (and `kubectl apply -k`) would, with the default load
// restrictions.

// components are the optional components, by directory name.
var components = []string{"grafana-dashboard", "prometheus-rule", "secret-keys"}

// kustomizeBuild builds the kustomization in dir of fsys and decodes its
// output.
func kustomizeBuild(t *testing.T, fsys filesys.FileSystem, dir string) []kubeObject {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeKube("kustomize build "+dir, out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// buildBase builds deploy/kubernetes from the disk, as kubectl apply -k would.
func buildBase(t *testing.T) []kubeObject {
	t.Helper()
	return kustomizeBuild(t, filesys.MakeFsOnDisk(), repoPath("deploy/kubernetes"))
}

// buildWith builds the base with the named components through an overlay
// beside it, as an operator's would be: /deploy/kubernetes is a copy of the
// repo's, in memory, and the overlay is /overlay.
func buildWith(t *testing.T, comps ...string) []kubeObject {
	t.Helper()
	fsys := filesys.MakeFsInMemory()
	src := repoPath("deploy/kubernetes")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return fsys.WriteFile("/deploy/kubernetes/"+filepath.ToSlash(rel), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	k := map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  []string{"../deploy/kubernetes"},
	}
	var paths []string
	for _, c := range comps {
		paths = append(paths, "../deploy/kubernetes/components/"+c)
	}
	k["components"] = paths
	b, err := yaml.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.WriteFile("/overlay/kustomization.yaml", b); err != nil {
		t.Fatal(err)
	}
	return kustomizeBuild(t, fsys, "/overlay")
}

// TestKustomizeComponentsListed: every directory under components/ is a
// component the tests build.
func TestKustomizeComponentsListed(t *testing.T) {
	entries, err := os.ReadDir(repoPath(componentsDir))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if !slices.Equal(dirs, components) {
		t.Errorf("components/ holds %v, the tests build %v", dirs, components)
	}
}

// TestKustomizeBase: the base builds, every object decodes strictly into its
// type, and every workload passes Pod Security "restricted".
func TestKustomizeBase(t *testing.T) {
	objs := buildBase(t)
	for _, o := range objs {
		if o.kind != "Namespace" && o.namespace != "hookgate" {
			t.Errorf("%s is in namespace %q, want hookgate", o, o.namespace)
		}
	}
	checkRestricted(t, objs)
}

// TestKustomizeEachComponent: each component builds on the base alone.
func TestKustomizeEachComponent(t *testing.T) {
	for _, c := range components {
		t.Run(c, func(t *testing.T) {
			checkRestricted(t, buildWith(t, c))
		})
	}
}

// TestKustomizeAllComponents: the base with every component builds, decodes
// strictly, passes Pod Security "restricted", and carries the rules and the
// dashboard of deploy/ unchanged.
func TestKustomizeAllComponents(t *testing.T) {
	objs := buildWith(t, components...)
	checkRestricted(t, objs)

	rule := one[monitoringv1.PrometheusRule](t, objs, "PrometheusRule", "hookgate")
	if rule.Namespace != "hookgate" {
		t.Errorf("PrometheusRule in namespace %q, want hookgate", rule.Namespace)
	}
	checkRulesEqual(t, "the prometheus-rule component", rule.Spec)

	cm := one[corev1.ConfigMap](t, objs, "ConfigMap", "hookgate-dashboard")
	checkDashboardConfigMap(t, "the grafana-dashboard component", cm)

	dep := one[appsv1.Deployment](t, objs, "Deployment", "hookgate")
	c := dep.Spec.Template.Spec.Containers[0]
	arg := "--secret-keys=/etc/hookgate/secret-keys/secret-keys"
	if !slices.Contains(c.Args, arg) || c.Args[0] != "serve" {
		t.Errorf("the secret-keys component: args %q, want serve ... %s", c.Args, arg)
	}
	checkSecretMounted(t, &dep.Spec.Template.Spec, "/etc/hookgate/secret-keys/secret-keys", "hookgate-secret-keys", "secret-keys")
}

// checkRulesEqual: spec is the rules file, decoded into the operator's type.
func checkRulesEqual(t *testing.T, where string, spec monitoringv1.PrometheusRuleSpec) {
	t.Helper()
	var want monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(readFile(t, rulesFile), &want); err != nil {
		t.Fatalf("%s as a PrometheusRule spec: %v", rulesFile, err)
	}
	if len(want.Groups) == 0 {
		t.Fatalf("%s has no groups", rulesFile)
	}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("%s: the PrometheusRule's groups differ from %s", where, rulesFile)
	}
}

// checkDashboardConfigMap: the ConfigMap holds the dashboard file, byte for
// byte, under its own name, with the label Grafana's sidecar looks for.
func checkDashboardConfigMap(t *testing.T, where string, cm *corev1.ConfigMap) {
	t.Helper()
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("%s: labels %v, want grafana_dashboard: \"1\"", where, cm.Labels)
	}
	if len(cm.Data) != 1 {
		t.Errorf("%s: %d keys, want 1", where, len(cm.Data))
	}
	if got := cm.Data["hookgate-dashboard.json"]; got != string(readFile(t, dashboardFile)) {
		t.Errorf("%s: hookgate-dashboard.json differs from %s (%d bytes, want %d)", where, dashboardFile, len(got), len(readFile(t, dashboardFile)))
	}
}

// checkSecretMounted: the gateway container mounts key of Secret secret so
// that it reads it at path.
func checkSecretMounted(t *testing.T, pod *corev1.PodSpec, path, secret, key string) {
	t.Helper()
	for _, m := range pod.Containers[0].VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("volume %s is mounted writable", m.Name)
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil || v.Secret.SecretName != secret {
				t.Fatalf("volume %s is not Secret %s", v.Name, secret)
			}
			if len(v.Secret.Items) == 0 {
				if rel != key {
					t.Errorf("%s is not Secret %s's key %s", path, secret, key)
				}
				return
			}
			for _, it := range v.Secret.Items {
				if it.Key == key && it.Path == rel {
					return
				}
			}
			t.Errorf("volume %s does not put key %s at %s", v.Name, key, rel)
			return
		}
		t.Fatalf("no volume %s", m.Name)
	}
	t.Errorf("nothing mounted at %s", path)
}
