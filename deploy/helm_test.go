package deploy_test

import (
	"bytes"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// The Helm chart (deploy/helm/hookgate), linted and rendered with Helm's own
// Go packages as `helm lint` and `helm template` would, no cluster and no helm
// binary needed: default values, every option on, and each value that changes
// what is rendered.

// release is the release the tests install: helm install hookgate -n hookgate.
const release = "hookgate"

// allOptions turns every option on, with the Secrets an operator would name.
func allOptions() map[string]any {
	return map[string]any{
		"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"prometheusRule": map[string]any{"enabled": true},
		"networkPolicy":  map[string]any{"enabled": true, "egress": map[string]any{"enabled": true}},
		"dashboard":      map[string]any{"enabled": true},
		"nats": map[string]any{
			"url":            "tls://nats.nats.svc:4222",
			"existingSecret": "hookgate-nats",
			"credsKey":       "gateway.creds",
			"tls":            map[string]any{"existingSecret": "hookgate-nats-tls", "certKey": "tls.crt", "keyKey": "tls.key"},
		},
		"secretKeys":     map[string]any{"existingSecret": "hookgate-secret-keys"},
		"trustedProxies": "10.0.0.0/8",
	}
}

func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	ch, err := loader.Load(repoPath(chartDir))
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	return ch
}

// renderChart renders the chart with vals over its values.yaml (checked
// against values.schema.json), in strict mode (a template that reads a value
// values.yaml lacks fails), and decodes every object strictly.
func renderChart(t *testing.T, vals map[string]any) ([]kubeObject, error) {
	t.Helper()
	ch := loadChart(t)
	opts := common.ReleaseOptions{Name: release, Namespace: "hookgate", IsInstall: true}
	top, err := util.ToRenderValues(ch, vals, opts, common.DefaultCapabilities.Copy())
	if err != nil {
		return nil, err
	}
	out, err := engine.Engine{Strict: true}.RenderWithContext(t.Context(), ch, top)
	if err != nil {
		return nil, err
	}
	var objs []kubeObject
	for _, name := range slices.Sorted(maps.Keys(out)) {
		if path.Ext(name) != ".yaml" {
			continue
		}
		o, err := decodeKube(name, []byte(out[name]))
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	return objs, nil
}

func mustRender(t *testing.T, vals map[string]any) []kubeObject {
	t.Helper()
	objs, err := renderChart(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return objs
}

// TestHelmChartMetadata: the chart has semver versions, and its default image
// is the appVersion, not latest.
func TestHelmChartMetadata(t *testing.T) {
	md := loadChart(t).Metadata
	if err := md.Validate(); err != nil {
		t.Fatal(err)
	}
	semver := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	for name, v := range map[string]string{"version": md.Version, "appVersion": md.AppVersion} {
		if !semver.MatchString(v) {
			t.Errorf("Chart.yaml %s %q is not MAJOR.MINOR.PATCH", name, v)
		}
	}
	dep := one[appsv1.Deployment](t, mustRender(t, nil), "Deployment", release)
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "hookgate:"+md.AppVersion {
		t.Errorf("default image %q, want hookgate:%s", img, md.AppVersion)
	}
}

// TestHelmLint: helm lint finds nothing to warn about, with the default
// values and with every option on.
func TestHelmLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{"default": nil, "all options": allOptions()} {
		t.Run(name, func(t *testing.T) {
			res := lint.RunAll(repoPath(chartDir), vals, "hookgate")
			for _, m := range res.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestHelmDefaults: with the default values the chart renders the gateways,
// their two Services, the autoscaler and the disruption budget, each wired
// to the others, and pods Pod Security "restricted" admits.
func TestHelmDefaults(t *testing.T) {
	objs := mustRender(t, nil)
	want := map[string]int{"Deployment": 1, "Service": 2, "HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1}
	if got := kinds(objs); !maps.Equal(got, want) {
		t.Errorf("rendered %v, want %v", got, want)
	}
	checkRestricted(t, objs)
	checkChartWiring(t, objs)

	dep := one[appsv1.Deployment](t, objs, "Deployment", release)
	if dep.Spec.Replicas != nil {
		t.Errorf("replicas %d beside an autoscaler: each upgrade would reset the count", *dep.Spec.Replicas)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("args %q, want [serve] (--secret-keys only when secretKeys.existingSecret is set)", c.Args)
	}
	req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
	if lim.IsZero() || req.Cmp(lim) != 0 {
		t.Errorf("memory request %s, limit %s: want them equal (GOMEMLIMIT comes from the limit)", req.String(), lim.String())
	}
	env := containerEnv(c)
	if env["HOOKGATE_SHUTDOWN_DELAY"] != "10s" {
		t.Errorf("HOOKGATE_SHUTDOWN_DELAY=%q, want 10s", env["HOOKGATE_SHUTDOWN_DELAY"])
	}
	checkGracePeriod(t, dep)
	pdb := one[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", release)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != "1" || pdb.Spec.MinAvailable != nil {
		t.Errorf("PodDisruptionBudget: maxUnavailable %v, minAvailable %v; want maxUnavailable 1", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
	tsc := dep.Spec.Template.Spec.TopologySpreadConstraints
	if len(tsc) == 0 || tsc[0].TopologyKey != "kubernetes.io/hostname" || !selectsPods(t, tsc[0].LabelSelector.MatchLabels, dep) {
		t.Errorf("topologySpreadConstraints %+v: want a spread over nodes of this release's gateways", tsc)
	}
}

// TestHelmAllOptions: with every option on, the chart adds the
// ServiceMonitor, the PrometheusRule (the rules file, unchanged), the
// NetworkPolicy and the dashboard ConfigMap (the dashboard file, byte for
// byte), and mounts the Secrets it is given; all of it decodes strictly and
// Pod Security "restricted" admits the pods.
func TestHelmAllOptions(t *testing.T) {
	objs := mustRender(t, allOptions())
	want := map[string]int{
		"Deployment": 1, "Service": 2, "HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1,
		"ServiceMonitor": 1, "PrometheusRule": 1, "NetworkPolicy": 1, "ConfigMap": 1,
	}
	if got := kinds(objs); !maps.Equal(got, want) {
		t.Errorf("rendered %v, want %v", got, want)
	}
	checkRestricted(t, objs)
	checkChartWiring(t, objs)

	checkRulesEqual(t, "the chart", one[monitoringv1.PrometheusRule](t, objs, "PrometheusRule", release).Spec)
	checkDashboardConfigMap(t, "the chart", one[corev1.ConfigMap](t, objs, "ConfigMap", release+"-dashboard"))

	dep := one[appsv1.Deployment](t, objs, "Deployment", release)
	pod := &dep.Spec.Template.Spec
	c := pod.Containers[0]
	env := containerEnv(c)
	if !slices.Equal(c.Args, []string{"serve", "--secret-keys=/etc/hookgate/secret-keys/secret-keys"}) {
		t.Errorf("args %q, want serve --secret-keys=<the mounted key ring>", c.Args)
	}
	checkSecretMounted(t, pod, "/etc/hookgate/secret-keys/secret-keys", "hookgate-secret-keys", "secret-keys")
	checkSecretMounted(t, pod, env["HOOKGATE_NATS_CREDS"], "hookgate-nats", "gateway.creds")
	checkSecretMounted(t, pod, env["HOOKGATE_NATS_TLS_CA"], "hookgate-nats-tls", "ca.crt")
	checkSecretMounted(t, pod, env["HOOKGATE_NATS_TLS_CERT"], "hookgate-nats-tls", "tls.crt")
	checkSecretMounted(t, pod, env["HOOKGATE_NATS_TLS_KEY"], "hookgate-nats-tls", "tls.key")
	if env["HOOKGATE_NATS_URL"] != "tls://nats.nats.svc:4222" || env["HOOKGATE_TRUSTED_PROXIES"] != "10.0.0.0/8" {
		t.Errorf("env %v: nats.url or trustedProxies not passed", env)
	}

	np := one[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", release)
	if !selectsPods(t, np.Spec.PodSelector.MatchLabels, dep) {
		t.Error("NetworkPolicy does not select the gateway pods")
	}
	var in []string
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			in = append(in, p.Port.String())
		}
	}
	if !slices.Equal(in, []string{"8080", "9180"}) {
		t.Errorf("NetworkPolicy lets in %v, want 8080 and 9180", in)
	}
	var out []string
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			out = append(out, p.Port.String()+"/"+string(*p.Protocol))
		}
	}
	if !slices.Equal(out, []string{"4222/TCP", "53/UDP", "53/TCP"}) {
		t.Errorf("NetworkPolicy lets out %v, want NATS and DNS only", out)
	}

	sm := one[monitoringv1.ServiceMonitor](t, objs, "ServiceMonitor", release)
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v: serviceMonitor.labels not applied", sm.Labels)
	}
}

// TestHelmValues: each value that changes what is rendered, and the values
// the chart refuses.
func TestHelmValues(t *testing.T) {
	tests := []struct {
		name    string
		vals    map[string]any
		wantErr string // a substring of the render error; "" for none
		check   func(t *testing.T, objs []kubeObject)
	}{
		{
			name: "autoscaling off",
			vals: map[string]any{"autoscaling": map[string]any{"enabled": false}, "replicaCount": 3},
			check: func(t *testing.T, objs []kubeObject) {
				if n := kinds(objs)["HorizontalPodAutoscaler"]; n != 0 {
					t.Errorf("%d autoscalers", n)
				}
				if r := one[appsv1.Deployment](t, objs, "Deployment", release).Spec.Replicas; r == nil || *r != 3 {
					t.Errorf("replicas %v, want 3", r)
				}
			},
		},
		{
			name: "NATS password from the reference cluster's Secret",
			vals: map[string]any{"nats": map[string]any{"existingSecret": "nats-users"}},
			check: func(t *testing.T, objs []kubeObject) {
				c := one[appsv1.Deployment](t, objs, "Deployment", release).Spec.Template.Spec.Containers[0]
				want := map[string]string{"HOOKGATE_NATS_USER": "gateway", "HOOKGATE_NATS_PASSWORD": "Secret nats-users, key gateway-password"}
				if got := envSources(c); !mapsContain(got, want) {
					t.Errorf("env %v, want %v", got, want)
				}
				if len(c.VolumeMounts) != 0 {
					t.Errorf("volume mounts %v, want none", c.VolumeMounts)
				}
			},
		},
		{
			name: "NATS user and password from a Secret",
			vals: map[string]any{"nats": map[string]any{"existingSecret": "s", "userKey": "user", "passwordKey": "password"}},
			check: func(t *testing.T, objs []kubeObject) {
				c := one[appsv1.Deployment](t, objs, "Deployment", release).Spec.Template.Spec.Containers[0]
				want := map[string]string{"HOOKGATE_NATS_USER": "Secret s, key user", "HOOKGATE_NATS_PASSWORD": "Secret s, key password"}
				if got := envSources(c); !mapsContain(got, want) {
					t.Errorf("env %v, want %v", got, want)
				}
			},
		},
		{
			name: "a longer shutdown",
			vals: map[string]any{"shutdownDelay": "1m30s", "shutdownTimeout": "1m"},
			check: func(t *testing.T, objs []kubeObject) {
				dep := one[appsv1.Deployment](t, objs, "Deployment", release)
				if g := *dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g != 155 {
					t.Errorf("terminationGracePeriodSeconds %d, want 90+60+5", g)
				}
				checkGracePeriod(t, dep)
			},
		},
		{
			name: "an image by digest",
			vals: map[string]any{"image": map[string]any{"repository": "registry.example/hookgate", "digest": "sha256:" + strings.Repeat("ab", 32)}},
			check: func(t *testing.T, objs []kubeObject) {
				img := one[appsv1.Deployment](t, objs, "Deployment", release).Spec.Template.Spec.Containers[0].Image
				if img != "registry.example/hookgate@sha256:"+strings.Repeat("ab", 32) {
					t.Errorf("image %q", img)
				}
			},
		},
		{
			name: "another release name",
			vals: map[string]any{"fullnameOverride": "webhooks"},
			check: func(t *testing.T, objs []kubeObject) {
				checkChartWiring(t, objs)
				one[appsv1.Deployment](t, objs, "Deployment", "webhooks")
				one[corev1.Service](t, objs, "Service", "webhooks-metrics")
			},
		},
		{
			name: "stream limits",
			vals: map[string]any{"nats": map[string]any{"streamMaxBytes": int64(100) << 30, "streamMaxAge": "720h"}},
			check: func(t *testing.T, objs []kubeObject) {
				env := containerEnv(one[appsv1.Deployment](t, objs, "Deployment", release).Spec.Template.Spec.Containers[0])
				if env["HOOKGATE_STREAM_MAX_BYTES"] != "107374182400" || env["HOOKGATE_STREAM_MAX_AGE"] != "720h" {
					t.Errorf("HOOKGATE_STREAM_MAX_BYTES=%q HOOKGATE_STREAM_MAX_AGE=%q, want 107374182400 and 720h",
						env["HOOKGATE_STREAM_MAX_BYTES"], env["HOOKGATE_STREAM_MAX_AGE"])
				}
			},
		},
		{
			name: "serve's stream limits",
			vals: map[string]any{"nats": map[string]any{"streamMaxBytes": nil}},
			check: func(t *testing.T, objs []kubeObject) {
				env := containerEnv(one[appsv1.Deployment](t, objs, "Deployment", release).Spec.Template.Spec.Containers[0])
				for _, name := range []string{"HOOKGATE_STREAM_MAX_BYTES", "HOOKGATE_STREAM_MAX_AGE"} {
					if _, ok := env[name]; ok {
						t.Errorf("%s set", name)
					}
				}
			},
		},
		{name: "a size in words", vals: map[string]any{"nats": map[string]any{"streamMaxBytes": "6GiB"}}, wantErr: "/nats/streamMaxBytes"},
		{name: "milliseconds", vals: map[string]any{"shutdownDelay": "500ms"}, wantErr: "shutdownDelay"},
		{name: "an empty delay", vals: map[string]any{"shutdownDelay": ""}, wantErr: "shutdownDelay"},
		{name: "latest", vals: map[string]any{"image": map[string]any{"tag": "latest"}}, wantErr: "/image/tag"},
		{name: "a mistyped option", vals: map[string]any{"serviceMonitor": map[string]any{"enable": true}}, wantErr: "enable"},
		{name: "an unknown value", vals: map[string]any{"replicas": 3}, wantErr: "replicas"},
		{name: "a certificate without its key", vals: map[string]any{"nats": map[string]any{"tls": map[string]any{"existingSecret": "s", "certKey": "tls.crt"}}}, wantErr: "keyKey"},
		{name: "no NATS URL", vals: map[string]any{"nats": map[string]any{"url": ""}}, wantErr: "/nats/url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := renderChart(t, tt.vals)
			switch {
			case tt.wantErr != "" && err == nil:
				t.Fatalf("rendered; want an error naming %s", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not name %s", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			}
			if tt.check != nil {
				checkRestricted(t, objs)
				tt.check(t, objs)
			}
		})
	}
}

// TestHelmFollowsKustomizeBase: the chart's gateways with the default values
// run as the kustomize base's do: the same image, container settings,
// probes, security contexts, rollout, grace period, spread, Services,
// ServiceMonitor, disruption budget, NetworkPolicy and autoscaler. The base is the reference: a change
// there fails this test until the chart follows.
func TestHelmFollowsKustomizeBase(t *testing.T) {
	base, chart := buildBase(t), mustRender(t, nil)
	bd := one[appsv1.Deployment](t, base, "Deployment", "hookgate")
	cd := one[appsv1.Deployment](t, chart, "Deployment", release)
	bp, cp := bd.Spec.Template.Spec, cd.Spec.Template.Spec
	bc, cc := bp.Containers[0], cp.Containers[0]

	// same compares as YAML: a pointer by what it points to, a quantity
	// as written.
	same := func(what string, b, c any) {
		t.Helper()
		bs, err := yaml.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bs, cs) {
			t.Errorf("%s differs:\n base:\n%s chart:\n%s", what, bs, cs)
		}
	}
	same("image", bc.Image, cc.Image)
	same("strategy", bd.Spec.Strategy, cd.Spec.Strategy)
	same("replicas", bd.Spec.Replicas, cd.Spec.Replicas)
	same("terminationGracePeriodSeconds", bp.TerminationGracePeriodSeconds, cp.TerminationGracePeriodSeconds)
	same("automountServiceAccountToken", bp.AutomountServiceAccountToken, cp.AutomountServiceAccountToken)
	same("pod securityContext", bp.SecurityContext, cp.SecurityContext)
	same("container securityContext", bc.SecurityContext, cc.SecurityContext)
	same("resources", bc.Resources, cc.Resources)
	same("ports", bc.Ports, cc.Ports)
	same("livenessProbe", bc.LivenessProbe, cc.LivenessProbe)
	same("readinessProbe", bc.ReadinessProbe, cc.ReadinessProbe)
	same("startupProbe", bc.StartupProbe, cc.StartupProbe)
	same("args", bc.Args, cc.Args)
	benv, cenv := containerEnv(bc), containerEnv(cc)
	for _, name := range slices.Sorted(maps.Keys(benv)) {
		if strings.HasPrefix(name, "HOOKGATE_NATS_") && name != "HOOKGATE_NATS_URL" {
			continue // the base's own NATS users; the chart takes an existing Secret
		}
		same("env "+name, benv[name], cenv[name])
	}
	// The spread, but for the label selector (the chart's names its release).
	spread := func(p corev1.PodSpec) []corev1.TopologySpreadConstraint {
		var out []corev1.TopologySpreadConstraint
		for _, c := range p.TopologySpreadConstraints {
			c.LabelSelector = nil
			out = append(out, c)
		}
		return out
	}
	same("topologySpreadConstraints", spread(bp), spread(cp))
	bpdb := one[policyv1.PodDisruptionBudget](t, base, "PodDisruptionBudget", "hookgate")
	cpdb := one[policyv1.PodDisruptionBudget](t, chart, "PodDisruptionBudget", release)
	same("PodDisruptionBudget", []any{bpdb.Spec.MaxUnavailable, bpdb.Spec.MinAvailable}, []any{cpdb.Spec.MaxUnavailable, cpdb.Spec.MinAvailable})
	for _, name := range []string{"hookgate", "hookgate-metrics"} {
		bs, cs := one[corev1.Service](t, base, "Service", name).Spec, one[corev1.Service](t, chart, "Service", name).Spec
		bs.Selector, cs.Selector = nil, nil // the chart's names its release
		same("Service "+name, bs, cs)
	}
	withOptions := mustRender(t, map[string]any{"networkPolicy": map[string]any{"enabled": true}, "serviceMonitor": map[string]any{"enabled": true}})
	bsm := one[monitoringv1.ServiceMonitor](t, base, "ServiceMonitor", "hookgate")
	csm := one[monitoringv1.ServiceMonitor](t, withOptions, "ServiceMonitor", release)
	same("ServiceMonitor jobLabel and endpoints", []any{bsm.Spec.JobLabel, bsm.Spec.Endpoints}, []any{csm.Spec.JobLabel, csm.Spec.Endpoints})
	bnp := one[networkingv1.NetworkPolicy](t, base, "NetworkPolicy", "hookgate")
	cnp := one[networkingv1.NetworkPolicy](t, withOptions, "NetworkPolicy", release)
	same("NetworkPolicy policyTypes", bnp.Spec.PolicyTypes, cnp.Spec.PolicyTypes)
	same("NetworkPolicy ingress", bnp.Spec.Ingress, cnp.Spec.Ingress)
	bh := one[autoscalingv2.HorizontalPodAutoscaler](t, base, "HorizontalPodAutoscaler", "hookgate")
	ch := one[autoscalingv2.HorizontalPodAutoscaler](t, chart, "HorizontalPodAutoscaler", release)
	bh.Spec.ScaleTargetRef.Name, ch.Spec.ScaleTargetRef.Name = "", ""
	same("HorizontalPodAutoscaler", bh.Spec, ch.Spec)
}

// TestHelmGatewaysReachReferenceNATS: the chart's gateways carry the label
// that the NetworkPolicy of the kustomize base's NATS lets in on port 4222.
func TestHelmGatewaysReachReferenceNATS(t *testing.T) {
	base := buildBase(t)
	sts := one[appsv1.StatefulSet](t, base, "StatefulSet", "nats")
	pods := one[appsv1.Deployment](t, mustRender(t, nil), "Deployment", release).Spec.Template.Labels
	var policies int
	for _, o := range base {
		np, ok := o.obj.(*networkingv1.NetworkPolicy)
		if !ok || !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(sts.Spec.Template.Labels)) {
			continue
		}
		policies++
		if !letsIn(np, pods, 4222, "client") {
			t.Errorf("NetworkPolicy %s keeps the chart's gateways (labels %v) out of NATS's port 4222", np.Name, pods)
		}
	}
	if policies == 0 {
		t.Error("no NetworkPolicy of the base selects the NATS pods")
	}
}

// letsIn: a rule of np admits pods with these labels from its own namespace
// on port (given by number or by name).
func letsIn(np *networkingv1.NetworkPolicy, pod map[string]string, port int, portName string) bool {
	for _, r := range np.Spec.Ingress {
		portOK := len(r.Ports) == 0
		for _, p := range r.Ports {
			if p.Port == nil || p.Port.IntValue() == port || p.Port.String() == portName {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		if len(r.From) == 0 {
			return true
		}
		for _, peer := range r.From {
			if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err == nil && sel.Matches(labels.Set(pod)) {
				return true
			}
		}
	}
	return false
}

// checkChartWiring: the Services, budget, autoscaler and ServiceMonitor
// point at this release's gateways, and the scrape gets job="hookgate".
func checkChartWiring(t *testing.T, objs []kubeObject) {
	t.Helper()
	var dep *appsv1.Deployment
	for _, o := range objs {
		if d, ok := o.obj.(*appsv1.Deployment); ok {
			dep = d
		}
	}
	if dep == nil {
		t.Fatal("no Deployment")
	}
	if !selectsPods(t, dep.Spec.Selector.MatchLabels, dep) {
		t.Error("the Deployment's selector does not match its pods")
	}
	for _, o := range objs {
		switch x := o.obj.(type) {
		case *corev1.Service:
			if !selectsPods(t, x.Spec.Selector, dep) {
				t.Errorf("%s does not select the gateways", o)
			}
		case *policyv1.PodDisruptionBudget:
			if !selectsPods(t, x.Spec.Selector.MatchLabels, dep) {
				t.Errorf("%s does not select the gateways", o)
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			if x.Spec.ScaleTargetRef.Kind != "Deployment" || x.Spec.ScaleTargetRef.Name != dep.Name {
				t.Errorf("%s scales %s %s", o, x.Spec.ScaleTargetRef.Kind, x.Spec.ScaleTargetRef.Name)
			}
		case *monitoringv1.ServiceMonitor:
			var svc *corev1.Service
			for _, s := range objs {
				if s, ok := s.obj.(*corev1.Service); ok && labels.SelectorFromSet(x.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
					if svc != nil {
						t.Errorf("%s selects two Services", o)
					}
					svc = s
				}
			}
			if svc == nil || svc.Spec.Ports[0].Name != x.Spec.Endpoints[0].Port {
				t.Fatalf("%s does not select a Service with port %s", o, x.Spec.Endpoints[0].Port)
			}
			if job := svc.Labels[x.Spec.JobLabel]; job != "hookgate" {
				t.Errorf("%s: job label %q, want hookgate (the job the rules and the dashboard select)", o, job)
			}
		}
	}
}

// selectsPods: matchLabels is non-empty and selects dep's pods.
func selectsPods(t *testing.T, matchLabels map[string]string, dep *appsv1.Deployment) bool {
	t.Helper()
	return len(matchLabels) > 0 && labels.SelectorFromSet(matchLabels).Matches(labels.Set(dep.Spec.Template.Labels))
}

// envSources are a container's variables: values, and the Secret keys the
// others come from.
func envSources(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = "Secret " + e.ValueFrom.SecretKeyRef.Name + ", key " + e.ValueFrom.SecretKeyRef.Key
		}
	}
	return env
}

// mapsContain: m has every entry of sub.
func mapsContain(m, sub map[string]string) bool {
	for k, v := range sub {
		if got, ok := m[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func containerEnv(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

// checkGracePeriod: the pod may take longer to stop than serve does:
// --shutdown-delay + --shutdown-timeout.
func checkGracePeriod(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if need := shutdownBudget(t, containerEnv(dep.Spec.Template.Spec.Containers[0])); grace <= need {
		t.Errorf("terminationGracePeriodSeconds %s, want more than --shutdown-delay + --shutdown-timeout = %s", grace, need)
	}
}
