package deploy_test

import (
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Kubernetes manifests of deploy/kubernetes/: what the kustomization
// applies, and how its objects refer to each other (selectors, ports, names).

type k8sObject struct {
	file string
	doc  map[string]any
}

func (o k8sObject) kind() string { return str(o.doc, "kind") }
func (o k8sObject) name() string { return str(o.doc, "metadata", "name") }

// loadKubernetes returns every object of the kustomization's resources, and
// fails the test for a manifest the kustomization leaves out.
func loadKubernetes(t *testing.T) []k8sObject {
	t.Helper()
	kust := yamlDoc(t, "deploy/kubernetes/kustomization.yaml")
	resources := strSlice(list(kust, "resources"))
	if len(resources) == 0 {
		t.Fatal("kustomization.yaml lists no resources")
	}
	files, err := filepath.Glob(repoPath("deploy/kubernetes/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base != "kustomization.yaml" && !slices.Contains(resources, base) {
			t.Errorf("deploy/kubernetes/%s is not listed in kustomization.yaml", base)
		}
	}
	var objs []k8sObject
	for _, r := range resources {
		for i, doc := range yamlDocs(t, "deploy/kubernetes/"+r) {
			o := k8sObject{file: r, doc: doc}
			if str(doc, "apiVersion") == "" || o.kind() == "" || o.name() == "" {
				t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", r, i+1)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

// find returns the object of that kind and name, checking its apiVersion.
func find(t *testing.T, objs []k8sObject, apiVersion, kind, name string) map[string]any {
	t.Helper()
	for _, o := range objs {
		if o.kind() == kind && o.name() == name {
			if got := str(o.doc, "apiVersion"); got != apiVersion {
				t.Errorf("%s %s: apiVersion %q, want %q", kind, name, got, apiVersion)
			}
			return o.doc
		}
	}
	t.Fatalf("no %s %s in the kustomization's resources", kind, name)
	return nil
}

// containerPort resolves a port given by number or by name.
func containerPort(c any, port any) int {
	if n, ok := port.(int); ok {
		return n
	}
	for _, p := range list(c, "ports") {
		if str(p, "name") == port {
			n, _ := get(p, "containerPort").(int)
			return n
		}
	}
	return 0
}

func envOf(c any) map[string]string {
	env := map[string]string{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	return env
}

// selects says whether selector (matchLabels or a Service's selector) picks
// pods labelled labels.
func selects(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func hasServicePort(svc map[string]any, port int) bool {
	for _, p := range list(svc, "spec", "ports") {
		if n, _ := get(p, "port").(int); n == port {
			return true
		}
	}
	return false
}

// gateway returns the Deployment hookgate, its pod labels and its one container.
func gateway(t *testing.T, objs []k8sObject) (dep, podLabels map[string]any, container any) {
	t.Helper()
	dep = find(t, objs, "apps/v1", "Deployment", "hookgate")
	containers := list(dep, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("Deployment has %d containers, want 1", len(containers))
	}
	return dep, mapping(dep, "spec", "template", "metadata", "labels"), containers[0]
}

// TestKubernetesDeployment: gateways counted by the HPA alone, probed on the
// metrics listener, storing with 3 replicas on the NATS StatefulSet through
// its client Service.
func TestKubernetesDeployment(t *testing.T) {
	objs := loadKubernetes(t)
	dep, podLabels, c := gateway(t, objs)
	if n := get(dep, "spec", "replicas"); n != nil {
		t.Errorf("Deployment replicas %v, want none: the HorizontalPodAutoscaler owns the count, and each apply would reset it", n)
	}
	hpa := find(t, objs, "autoscaling/v2", "HorizontalPodAutoscaler", "hookgate")
	if n, _ := get(hpa, "spec", "minReplicas").(int); n < 2 {
		t.Errorf("HorizontalPodAutoscaler minReplicas %v, want at least 2", get(hpa, "spec", "minReplicas"))
	}
	if !selects(mapping(dep, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("Deployment selector does not match its pod labels")
	}
	for _, probe := range []struct{ key, path string }{{"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}} {
		if got := str(c, probe.key, "httpGet", "path"); got != probe.path {
			t.Errorf("%s path %q, want %s", probe.key, got, probe.path)
		}
		if got := containerPort(c, get(c, probe.key, "httpGet", "port")); got != 9180 {
			t.Errorf("%s port resolves to %d, want 9180 (the metrics listener)", probe.key, got)
		}
	}
	if containerPort(c, "http") != 8080 {
		t.Error("no container port named http on 8080")
	}
	env := envOf(c)
	if env["HOOKGATE_REPLICAS"] != "3" {
		t.Errorf("HOOKGATE_REPLICAS=%q, want 3", env["HOOKGATE_REPLICAS"])
	}
	natsURL, err := url.Parse(env["HOOKGATE_NATS_URL"])
	if err != nil || natsURL.Scheme != "nats" {
		t.Fatalf("HOOKGATE_NATS_URL=%q, want nats://SERVICE:4222", env["HOOKGATE_NATS_URL"])
	}
	natsSvc := find(t, objs, "v1", "Service", strings.Split(natsURL.Hostname(), ".")[0])
	sts := find(t, objs, "apps/v1", "StatefulSet", "nats")
	if !selects(mapping(natsSvc, "spec", "selector"), mapping(sts, "spec", "template", "metadata", "labels")) {
		t.Errorf("Service %s does not select the NATS StatefulSet's pods", natsURL.Hostname())
	}
}

// TestKubernetesDeploymentHardening: the gateway runs as non-root on a
// read-only root filesystem with no capabilities, with resources set, and
// gets more time to stop than serve takes to drain.
func TestKubernetesDeploymentHardening(t *testing.T) {
	dep, _, c := gateway(t, loadKubernetes(t))
	if str(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot") != "true" &&
		str(c, "securityContext", "runAsNonRoot") != "true" {
		t.Error("runAsNonRoot is not set")
	}
	if str(c, "securityContext", "readOnlyRootFilesystem") != "true" {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if str(c, "securityContext", "allowPrivilegeEscalation") != "false" {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if drop := strSlice(list(c, "securityContext", "capabilities", "drop")); !slices.Contains(drop, "ALL") {
		t.Errorf("capabilities.drop %v, want ALL", drop)
	}
	for _, k := range []string{"requests", "limits"} {
		for _, r := range []string{"cpu", "memory"} {
			if str(c, "resources", k, r) == "" {
				t.Errorf("resources.%s.%s is not set", k, r)
			}
		}
	}
	if req, lim := str(c, "resources", "requests", "memory"), str(c, "resources", "limits", "memory"); req != lim {
		t.Errorf("memory request %s, limit %s: want them equal (serve sets GOMEMLIMIT from the limit)", req, lim)
	}
	grace, _ := get(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
	if need := shutdownBudget(t, envOf(c)); time.Duration(grace)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %d, want more than --shutdown-delay + --shutdown-timeout = %s", grace, need)
	}
	if envOf(c)["HOOKGATE_SHUTDOWN_DELAY"] == "" {
		t.Error("no HOOKGATE_SHUTDOWN_DELAY: a rollout refuses the webhooks routed here while the endpoint update spreads")
	}
}

// TestKubernetesGatewayObjects: the Services, PodDisruptionBudget and
// HorizontalPodAutoscaler all point at the gateway Deployment.
func TestKubernetesGatewayObjects(t *testing.T) {
	objs := loadKubernetes(t)
	_, podLabels, _ := gateway(t, objs)

	web := find(t, objs, "v1", "Service", "hookgate")
	if !selects(mapping(web, "spec", "selector"), podLabels) {
		t.Error("Service hookgate does not select the gateway pods")
	}
	if !hasServicePort(web, 8080) {
		t.Error("Service hookgate has no port 8080")
	}
	metricsSvc := find(t, objs, "v1", "Service", "hookgate-metrics")
	if !selects(mapping(metricsSvc, "spec", "selector"), podLabels) || !hasServicePort(metricsSvc, 9180) {
		t.Error("Service hookgate-metrics does not expose the gateways' port 9180")
	}

	pdb := find(t, objs, "policy/v1", "PodDisruptionBudget", "hookgate")
	if !selects(mapping(pdb, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("PodDisruptionBudget hookgate does not select the gateway pods")
	}
	if n, _ := get(pdb, "spec", "maxUnavailable").(int); n != 1 || get(pdb, "spec", "minAvailable") != nil {
		t.Errorf("PodDisruptionBudget hookgate: maxUnavailable %v, minAvailable %v; want maxUnavailable 1 alone", get(pdb, "spec", "maxUnavailable"), get(pdb, "spec", "minAvailable"))
	}

	hpa := find(t, objs, "autoscaling/v2", "HorizontalPodAutoscaler", "hookgate")
	if str(hpa, "spec", "scaleTargetRef", "kind") != "Deployment" || str(hpa, "spec", "scaleTargetRef", "name") != "hookgate" {
		t.Error("HorizontalPodAutoscaler does not target Deployment hookgate")
	}
	if str(hpa, "spec", "metrics", 0, "resource", "name") != "cpu" {
		t.Error("HorizontalPodAutoscaler does not scale on CPU")
	}
}

// TestKubernetesServiceMonitor: the Prometheus Operator scrapes
// hookgate-metrics under job="hookgate", the job the rules and the dashboard
// select.
func TestKubernetesServiceMonitor(t *testing.T) {
	objs := loadKubernetes(t)
	metricsSvc := find(t, objs, "v1", "Service", "hookgate-metrics")
	sm := find(t, objs, "monitoring.coreos.com/v1", "ServiceMonitor", "hookgate")
	if !selects(mapping(sm, "spec", "selector", "matchLabels"), mapping(metricsSvc, "metadata", "labels")) {
		t.Error("ServiceMonitor does not select Service hookgate-metrics")
	}
	if str(sm, "spec", "endpoints", 0, "port") != "metrics" || str(sm, "spec", "endpoints", 0, "path") != "/metrics" {
		t.Error("ServiceMonitor endpoint is not port metrics, path /metrics")
	}
	if lbl := str(sm, "spec", "jobLabel"); str(metricsSvc, "metadata", "labels", lbl) != "hookgate" {
		t.Errorf("ServiceMonitor jobLabel %q does not make job=\"hookgate\"", lbl)
	}
}

// TestKubernetesNATSStatefulSet: three NATS pods behind a headless Service,
// each with its own JetStream volume; the README states the replica count and
// the quorum they give. (Its config: TestKubernetesNATSConfig.)
func TestKubernetesNATSStatefulSet(t *testing.T) {
	objs := loadKubernetes(t)
	sts := find(t, objs, "apps/v1", "StatefulSet", "nats")
	if n, _ := get(sts, "spec", "replicas").(int); n != 3 {
		t.Errorf("NATS StatefulSet replicas %v, want 3", get(sts, "spec", "replicas"))
	}
	headless := find(t, objs, "v1", "Service", str(sts, "spec", "serviceName"))
	if str(headless, "spec", "clusterIP") != "None" {
		t.Error("the NATS StatefulSet's serviceName is not a headless Service")
	}
	if len(list(sts, "spec", "volumeClaimTemplates")) == 0 {
		t.Error("NATS StatefulSet has no volumeClaimTemplates for JetStream")
	}
	readme := string(readFile(t, "deploy/kubernetes/README.md"))
	for _, s := range []string{"--replicas 3", "quorum of 2"} {
		if !strings.Contains(readme, s) {
			t.Errorf("deploy/kubernetes/README.md does not say %q", s)
		}
	}
}

// shutdownBudget is how long a gateway with env may take to stop after
// SIGTERM: --shutdown-delay + --shutdown-timeout (defaults 0s and 30s).
func shutdownBudget(t *testing.T, env map[string]string) time.Duration {
	t.Helper()
	total := time.Duration(0)
	for name, def := range map[string]string{"HOOKGATE_SHUTDOWN_DELAY": "0s", "HOOKGATE_SHUTDOWN_TIMEOUT": "30s"} {
		v := env[name]
		if v == "" {
			v = def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		total += d
	}
	return total
}
