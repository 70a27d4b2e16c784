package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// The objects that the Helm chart renders and that kustomize builds, decoded
// strictly into their Go types (k8s.io/api and the Prometheus Operator's): a
// field the type does not have, a value of the wrong type, or a key given
// twice is an error, as the API server's strict field validation would make
// it. Every pod template is then judged by Pod Security "restricted" with the
// admission plugin's own checks.

// kubeTypes are the kinds the manifests may hold, by apiVersion and kind.
var kubeTypes = map[string]func() any{
	"v1/ConfigMap":                            func() any { return new(corev1.ConfigMap) },
	"v1/Namespace":                            func() any { return new(corev1.Namespace) },
	"v1/Secret":                               func() any { return new(corev1.Secret) },
	"v1/Service":                              func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                       func() any { return new(corev1.ServiceAccount) },
	"apps/v1/Deployment":                      func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                     func() any { return new(appsv1.StatefulSet) },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return new(networkingv1.NetworkPolicy) },
	"policy/v1/PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(monitoringv1.PrometheusRule) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(monitoringv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return new(monitoringv1.PodMonitor) },
}

// kubeObject is one decoded object: obj is a pointer to its type.
type kubeObject struct {
	kind, name, namespace string
	obj                   any
}

func (o kubeObject) String() string { return o.kind + " " + o.name }

// decodeKube splits a YAML stream into documents and decodes each strictly
// into its type; from names the stream in errors.
func decodeKube(from string, stream []byte) ([]kubeObject, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var objs []kubeObject
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
		var head struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", from, len(objs)+1, err)
		}
		if head.Kind == "" && head.APIVersion == "" && len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		key := head.APIVersion + "/" + head.Kind
		newObj := kubeTypes[key]
		if newObj == nil {
			return nil, fmt.Errorf("%s: %s %q: no Go type for %s here", from, head.Kind, head.Metadata.Name, key)
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %s %s: %w", from, head.Kind, head.Metadata.Name, err)
		}
		objs = append(objs, kubeObject{kind: head.Kind, name: head.Metadata.Name, namespace: head.Metadata.Namespace, obj: obj})
	}
}

// one returns the object of that kind and name as its type.
func one[T any](t *testing.T, objs []kubeObject, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			v, ok := o.obj.(*T)
			if !ok {
				t.Fatalf("%s is a %T", o, o.obj)
			}
			return v
		}
	}
	t.Fatalf("no %s %s among %v", kind, name, objs)
	return nil
}

// kinds counts the objects of each kind.
func kinds(objs []kubeObject) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[o.kind]++
	}
	return n
}

// podTemplates are the pod templates of the workloads among objs.
func podTemplates(objs []kubeObject) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			out[o.String()] = &w.Spec.Template
		case *appsv1.StatefulSet:
			out[o.String()] = &w.Spec.Template
		}
	}
	return out
}

// restrictedViolations are the Pod Security "restricted" checks (at the
// newest policy version) that a pod template fails, as "reason: detail".
func restrictedViolations(t *testing.T, pod *corev1.PodTemplateSpec) []string {
	t.Helper()
	eval, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	level := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	var out []string
	for _, r := range eval.EvaluatePod(level, &pod.ObjectMeta, &pod.Spec) {
		if !r.Allowed {
			out = append(out, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	return out
}

// checkRestricted fails the test for every workload among objs whose pods
// Pod Security "restricted" would refuse, and for a set of objects with no
// workload at all.
func checkRestricted(t *testing.T, objs []kubeObject) {
	t.Helper()
	pods := podTemplates(objs)
	if len(pods) == 0 {
		t.Fatal("no workload to check")
	}
	for name, pod := range pods {
		for _, v := range restrictedViolations(t, pod) {
			t.Errorf("%s: Pod Security restricted: %s", name, v)
		}
	}
}
