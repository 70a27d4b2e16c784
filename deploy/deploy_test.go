package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"
)

// The tests run in deploy/; the repo root is one up. A file a test needs and
// cannot find fails the test: nothing here is skipped.
const root = ".."

func repoPath(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(p))
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

// yamlDocs decodes every document of a (multi-document) YAML file.
func yamlDocs(t *testing.T, p string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, p)))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", p, len(docs)+1, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", p)
	}
	return docs
}

func yamlDoc(t *testing.T, p string) map[string]any {
	t.Helper()
	docs := yamlDocs(t, p)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", p, len(docs))
	}
	return docs[0]
}

// get walks maps and lists: get(v, "spec", "template", "containers", 0).
func get(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, keys ...any) string {
	switch x := get(v, keys...).(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	default:
		return ""
	}
}

func list(v any, keys ...any) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func mapping(v any, keys ...any) map[string]any {
	m, _ := get(v, keys...).(map[string]any)
	return m
}

// ---------------------------------------------------------------- compose

// composeEnv returns a service's environment, in either of compose's forms.
func composeEnv(svc map[string]any) map[string]string {
	env := map[string]string{}
	switch e := svc["environment"].(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = str(map[string]any{"v": v}, "v")
		}
	case []any:
		for _, kv := range e {
			s, _ := kv.(string)
			k, v, _ := strings.Cut(s, "=")
			env[k] = v
		}
	}
	return env
}

// composeHostPorts returns the host ports ("8080/tcp") a service publishes.
func composeHostPorts(t *testing.T, name string, svc map[string]any) []string {
	t.Helper()
	var out []string
	add := func(spec, proto string) {
		if proto == "" {
			proto = "tcp"
		}
		lo, hi, isRange := strings.Cut(spec, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			t.Errorf("service %s: host port %q: %v", name, spec, err)
			return
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				t.Errorf("service %s: host port %q: %v", name, spec, err)
				return
			}
		}
		for p := a; p <= b; p++ {
			out = append(out, strconv.Itoa(p)+"/"+proto)
		}
	}
	for _, p := range list(svc, "ports") {
		switch p := p.(type) {
		case string:
			spec, proto, _ := strings.Cut(p, "/")
			parts := strings.Split(spec, ":")
			switch len(parts) {
			case 1: // container port only: a random host port
			case 2:
				add(parts[0], proto)
			default: // host_ip:host:container (an IPv6 host_ip has more colons)
				add(parts[len(parts)-2], proto)
			}
		case map[string]any:
			if pub := str(p, "published"); pub != "" {
				add(pub, str(p, "protocol"))
			}
		case int:
		default:
			t.Errorf("service %s: port %v: unknown form", name, p)
		}
	}
	return out
}

// composeBindMounts returns a service's bind mounts as host path -> target.
func composeBindMounts(svc map[string]any) map[string]string {
	out := map[string]string{}
	for _, v := range list(svc, "volumes") {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && (strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "/") || strings.HasPrefix(parts[0], "~")) {
				out[parts[0]] = parts[1]
			}
		case map[string]any:
			if str(v, "type") == "bind" {
				out[str(v, "source")] = str(v, "target")
			}
		}
	}
	return out
}

func composeNamedVolumes(svc map[string]any) []string {
	var out []string
	for _, v := range list(svc, "volumes") {
		switch v := v.(type) {
		case string:
			src, _, ok := strings.Cut(v, ":")
			if ok && !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") && !strings.HasPrefix(src, "~") {
				out = append(out, src)
			}
		case map[string]any:
			if str(v, "type") == "volume" && str(v, "source") != "" {
				out = append(out, str(v, "source"))
			}
		}
	}
	return out
}

type composeFile struct {
	services map[string]map[string]any
	gateways []string // built from deploy/Dockerfile
	nats     []string // nats-server images
	raw      map[string]any
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	doc := yamlDoc(t, "docker-compose.yml")
	c := composeFile{services: map[string]map[string]any{}, raw: doc}
	svcs := mapping(doc, "services")
	if len(svcs) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	for name, v := range svcs {
		svc, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("docker-compose.yml: service %s is not a mapping", name)
		}
		c.services[name] = svc
		if path.Clean(str(svc, "build", "dockerfile")) == "deploy/Dockerfile" {
			c.gateways = append(c.gateways, name)
		}
		if img := str(svc, "image"); img == "nats" || strings.HasPrefix(img, "nats:") {
			c.nats = append(c.nats, name)
		}
	}
	sort.Strings(c.gateways)
	sort.Strings(c.nats)
	return c
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	if len(c.nats) != 3 {
		t.Errorf("NATS services %v, want 3 (a cluster of three nodes)", c.nats)
	}
	if len(c.gateways) != 2 {
		t.Errorf("gateway services built from deploy/Dockerfile %v, want 2", c.gateways)
	}
	var images []string
	for _, s := range c.services {
		images = append(images, strings.Split(str(s, "image"), ":")[0])
	}
	for _, want := range []string{"prom/prometheus", "grafana/grafana"} {
		if !slices.Contains(images, want) {
			t.Errorf("no service runs %s (images: %v)", want, images)
		}
	}
	for _, n := range c.nats {
		if !strings.HasPrefix(str(c.services[n], "image"), "nats:2.11") {
			t.Errorf("service %s: image %q, want nats:2.11", n, str(c.services[n], "image"))
		}
	}
}

func TestComposeBindMountsExist(t *testing.T) {
	c := loadCompose(t)
	n := 0
	for name, svc := range c.services {
		for src, dst := range composeBindMounts(svc) {
			n++
			if strings.HasPrefix(src, "/") || strings.HasPrefix(src, "~") {
				t.Errorf("service %s: bind mount %s -> %s is outside the repo", name, src, dst)
				continue
			}
			if _, err := os.Stat(repoPath(src)); err != nil {
				t.Errorf("service %s: bind mount %s -> %s: %v", name, src, dst, err)
			}
		}
		if ctx := str(svc, "build", "context"); ctx != "" {
			df := str(svc, "build", "dockerfile")
			if df == "" {
				df = "Dockerfile"
			}
			if _, err := os.Stat(repoPath(path.Join(ctx, df))); err != nil {
				t.Errorf("service %s: dockerfile: %v", name, err)
			}
		}
		for _, v := range composeNamedVolumes(svc) {
			if _, ok := mapping(c.raw, "volumes")[v]; !ok {
				t.Errorf("service %s: named volume %s is not declared under volumes:", name, v)
			}
		}
	}
	if n == 0 {
		t.Error("no bind mount found: Prometheus and Grafana need their files mounted")
	}
}

func TestComposeHostPortsUnique(t *testing.T) {
	c := loadCompose(t)
	owner := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.services)) {
		for _, p := range composeHostPorts(t, name, c.services[name]) {
			if o, dup := owner[p]; dup {
				t.Errorf("host port %s published by both %s and %s", p, o, name)
			}
			owner[p] = name
		}
	}
	for _, p := range []string{"8080/tcp", "8081/tcp", "9180/tcp", "9181/tcp"} {
		if !slices.Contains(c.gateways, owner[p]) {
			t.Errorf("host port %s: published by %q, want a gateway", p, owner[p])
		}
	}
}

func TestComposeGateways(t *testing.T) {
	c := loadCompose(t)
	if len(c.gateways) == 0 {
		t.Fatal("no gateway service (build.dockerfile: deploy/Dockerfile)")
	}
	promTargets := string(readFile(t, "deploy/prometheus/prometheus-compose.yml"))
	for _, g := range c.gateways {
		env := composeEnv(c.services[g])
		if env["HOOKGATE_REPLICAS"] != "3" {
			t.Errorf("%s: HOOKGATE_REPLICAS=%q, want 3", g, env["HOOKGATE_REPLICAS"])
		}
		raw := env["HOOKGATE_NATS_URL"]
		if raw == "" {
			t.Errorf("%s: HOOKGATE_NATS_URL is not set (the gateway would start an embedded NATS server)", g)
			continue
		}
		var hosts []string
		for _, u := range strings.Split(raw, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil || pu.Scheme != "nats" || pu.Port() != "4222" {
				t.Errorf("%s: HOOKGATE_NATS_URL entry %q: want nats://HOST:4222", g, u)
				continue
			}
			hosts = append(hosts, pu.Hostname())
		}
		sort.Strings(hosts)
		if !slices.Equal(hosts, c.nats) {
			t.Errorf("%s: HOOKGATE_NATS_URL lists %v, want every NATS service %v", g, hosts, c.nats)
		}
		if !strings.Contains(promTargets, g+":9180") {
			t.Errorf("deploy/prometheus/prometheus-compose.yml does not scrape %s:9180", g)
		}
	}
}

// --------------------------------------------------------------- NATS

func loadNATSConfig(t *testing.T, file, envName, serverName string) *server.Options {
	t.Helper()
	t.Setenv(envName, serverName)
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server config %s: %v", file, err)
	}
	if opts.ServerName != serverName {
		t.Errorf("%s: server_name %q, want %q from $%s", file, opts.ServerName, serverName, envName)
	}
	if !opts.JetStream {
		t.Errorf("%s: JetStream is off", file)
	}
	if opts.StoreDir == "" || !strings.HasPrefix(opts.StoreDir, "/data") {
		t.Errorf("%s: JetStream store_dir %q, want one on the /data volume", file, opts.StoreDir)
	}
	if opts.Cluster.Name == "" || opts.Cluster.Port != 6222 {
		t.Errorf("%s: cluster name %q port %d, want a named cluster on 6222", file, opts.Cluster.Name, opts.Cluster.Port)
	}
	if opts.Port != 4222 || opts.HTTPPort != 8222 {
		t.Errorf("%s: client port %d, monitoring port %d, want 4222 and 8222", file, opts.Port, opts.HTTPPort)
	}
	return opts
}

func routeHosts(opts *server.Options) []string {
	var hosts []string
	for _, r := range opts.Routes {
		hosts = append(hosts, r.Hostname()+":"+r.Port())
	}
	sort.Strings(hosts)
	return hosts
}

func TestComposeNATSConfig(t *testing.T) {
	c := loadCompose(t)
	var want []string
	for _, n := range c.nats {
		want = append(want, n+":6222")
	}
	for _, n := range c.nats {
		svc := c.services[n]
		var conf string
		for src, dst := range composeBindMounts(svc) {
			if strings.HasSuffix(src, ".conf") {
				conf = src
				if cmd := strings.Join(strSlice(list(svc, "command")), " "); !strings.Contains(cmd, dst) {
					t.Errorf("%s: command %q does not load the mounted config %s", n, cmd, dst)
				}
			}
		}
		if conf == "" {
			t.Errorf("%s: no nats-server config mounted", n)
			continue
		}
		name := composeEnv(svc)["NATS_SERVER_NAME"]
		if name != n {
			t.Errorf("%s: NATS_SERVER_NAME=%q, want the service name", n, name)
		}
		opts := loadNATSConfig(t, repoPath(conf), "NATS_SERVER_NAME", n)
		if got := routeHosts(opts); !slices.Equal(got, want) {
			t.Errorf("%s: routes %v, want %v", conf, got, want)
		}
		if !slices.Contains(composeNamedVolumes(svc), n+"-data") {
			t.Errorf("%s: JetStream data is not on a named volume (want %s-data:/data)", n, n)
		}
	}
}

func strSlice(l []any) []string {
	var out []string
	for _, v := range l {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// ---------------------------------------------------------- Kubernetes

type k8sObject struct {
	file string
	doc  map[string]any
}

func (o k8sObject) kind() string { return str(o.doc, "kind") }
func (o k8sObject) name() string { return str(o.doc, "metadata", "name") }

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
		p := "deploy/kubernetes/" + r
		for i, doc := range yamlDocs(t, p) {
			o := k8sObject{file: r, doc: doc}
			if str(doc, "apiVersion") == "" || o.kind() == "" || o.name() == "" {
				t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", r, i+1)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

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

func TestKubernetesDeployment(t *testing.T) {
	objs := loadKubernetes(t)
	dep := find(t, objs, "apps/v1", "Deployment", "hookgate")
	if n, _ := get(dep, "spec", "replicas").(int); n != 2 {
		t.Errorf("Deployment replicas %v, want 2", get(dep, "spec", "replicas"))
	}
	podLabels := mapping(dep, "spec", "template", "metadata", "labels")
	if !selects(mapping(dep, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("Deployment selector does not match its pod labels")
	}
	containers := list(dep, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("Deployment has %d containers, want 1", len(containers))
	}
	c := containers[0]
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
	grace, _ := get(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
	if grace <= 30 {
		t.Errorf("terminationGracePeriodSeconds %d, want more than serve's default --shutdown-timeout 30s", grace)
	}
}

func TestKubernetesObjects(t *testing.T) {
	objs := loadKubernetes(t)
	dep := find(t, objs, "apps/v1", "Deployment", "hookgate")
	podLabels := mapping(dep, "spec", "template", "metadata", "labels")

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

	hpa := find(t, objs, "autoscaling/v2", "HorizontalPodAutoscaler", "hookgate")
	if str(hpa, "spec", "scaleTargetRef", "kind") != "Deployment" || str(hpa, "spec", "scaleTargetRef", "name") != "hookgate" {
		t.Error("HorizontalPodAutoscaler does not target Deployment hookgate")
	}
	if str(hpa, "spec", "metrics", 0, "resource", "name") != "cpu" {
		t.Error("HorizontalPodAutoscaler does not scale on CPU")
	}

	sm := find(t, objs, "monitoring.coreos.com/v1", "ServiceMonitor", "hookgate")
	if !selects(mapping(sm, "spec", "selector", "matchLabels"), mapping(metricsSvc, "metadata", "labels")) {
		t.Error("ServiceMonitor does not select Service hookgate-metrics")
	}
	if str(sm, "spec", "endpoints", 0, "port") != "metrics" || str(sm, "spec", "endpoints", 0, "path") != "/metrics" {
		t.Error("ServiceMonitor endpoint is not port metrics, path /metrics")
	}
	// The rules and the dashboard select job="hookgate".
	if lbl := str(sm, "spec", "jobLabel"); str(metricsSvc, "metadata", "labels", lbl) != "hookgate" {
		t.Errorf("ServiceMonitor jobLabel %q does not make job=\"hookgate\"", lbl)
	}

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

	// The NATS config in the ConfigMap is a valid nats-server config whose
	// routes are the three pods through the headless Service.
	cm := find(t, objs, "v1", "ConfigMap", "nats-config")
	conf := str(cm, "data", "nats.conf")
	if conf == "" {
		t.Fatal("ConfigMap nats-config has no nats.conf")
	}
	f := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := loadNATSConfig(t, f, "SERVER_NAME", "nats-0")
	svc := str(headless, "metadata", "name")
	want := []string{"nats-0." + svc + ":6222", "nats-1." + svc + ":6222", "nats-2." + svc + ":6222"}
	if got := routeHosts(opts); !slices.Equal(got, want) {
		t.Errorf("nats.conf routes %v, want %v", got, want)
	}
	nc := list(sts, "spec", "template", "spec", "containers", 0, "env")
	var serverNameFromPod bool
	for _, e := range nc {
		if str(e, "name") == "SERVER_NAME" && str(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name" {
			serverNameFromPod = true
		}
	}
	if !serverNameFromPod {
		t.Error("NATS container does not set SERVER_NAME from metadata.name")
	}
	readme := string(readFile(t, "deploy/kubernetes/README.md"))
	for _, s := range []string{"--replicas 3", "quorum of 2"} {
		if !strings.Contains(readme, s) {
			t.Errorf("deploy/kubernetes/README.md does not say %q", s)
		}
	}
}

func hasServicePort(svc map[string]any, port int) bool {
	for _, p := range list(svc, "spec", "ports") {
		if n, _ := get(p, "port").(int); n == port {
			return true
		}
	}
	return false
}

// ------------------------------------------------------- metric names

// The contract's metrics; histograms also have _bucket, _sum and _count.
var contractMetrics = map[string]bool{ // name -> histogram
	"hookgate_http_requests_total":           false,
	"hookgate_http_request_duration_seconds": true,
	"hookgate_auth_failures_total":           false,
	"hookgate_published_messages_total":      false,
	"hookgate_publish_failures_total":        false,
	"hookgate_publish_duration_seconds":      true,
	"hookgate_token_cache_requests_total":    false,
	"hookgate_token_events_total":            false,
	"hookgate_nats_connected":                false,
	"hookgate_build_info":                    false,
}

var (
	promStringRe = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promBracesRe = regexp.MustCompile(`\{[^{}]*\}`)
	promRangeRe  = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGroupRe  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdentRe  = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true}
)

// metricNames returns the metric names a PromQL expression selects, after
// Grafana's $variables (only used in label values and ranges here).
func metricNames(expr string) []string {
	e := promStringRe.ReplaceAllString(expr, `""`)
	e = promBracesRe.ReplaceAllString(e, "{}")
	e = promRangeRe.ReplaceAllString(e, "[]")
	e = promGroupRe.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range promIdentRe.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		if loc[0] > 0 {
			prev := e[loc[0]-1]
			if prev == '$' || prev == '.' || (prev >= '0' && prev <= '9') {
				continue // a variable, or a number's exponent or unit
			}
		}
		if promKeywords[strings.ToLower(id)] {
			continue
		}
		if rest := strings.TrimLeft(e[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if !slices.Contains(names, id) {
			names = append(names, id)
		}
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{job="hookgate"} == 0`, []string{"up"}},
		{`sum by (job, instance) (rate(hookgate_http_requests_total{code=~"5.."}[5m])) / sum without (code) (rate(hookgate_http_requests_total[$__rate_interval]))`, []string{"hookgate_http_requests_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(hookgate_publish_duration_seconds_bucket{job=~"$job"}[5m]))) > 1e3`, []string{"hookgate_publish_duration_seconds_bucket"}},
		{`rate(a_total[1h] offset 5m) > 3 * rate(b_total[1h]) and on (instance) c`, []string{"a_total", "b_total", "c"}},
		{`count(hookgate_build_info{version!="by (x)"})`, []string{"hookgate_build_info"}},
		{`absent(up{job="hookgate"})`, []string{"up"}},
	} {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

// collectorMetrics is every metric family of the Go and process collectors,
// which the contract says /metrics includes.
func collectorMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	return out
}

// checkMetricName says why name may not appear in a dashboard or a rule, or "":
// it must be one of the contract's metrics (a histogram's _bucket, _sum or
// _count), a per-application metric, or one of the Go and process collectors'.
func checkMetricName(name string, goProcess map[string]bool, extra ...string) string {
	if slices.Contains(extra, name) {
		return ""
	}
	if strings.HasPrefix(name, "hookgate_app_") || name == "hookgate_credential_last_seen_timestamp_seconds" {
		return "" // per-application metrics, added with the per-application series cap
	}
	base := name
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok && contractMetrics[b] {
			base = b
		}
	}
	if _, ok := contractMetrics[base]; ok {
		return ""
	}
	if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
		if !goProcess[name] {
			return "not exported by the Go or process collector"
		}
		return ""
	}
	return "not a metric of the contract"
}

// -------------------------------------------------------------- Grafana

type grafanaPanel struct {
	Title      string          `json:"title"`
	Type       string          `json:"type"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

func allPanels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func TestGrafanaDashboard(t *testing.T) {
	var dash struct {
		SchemaVersion int            `json:"schemaVersion"`
		UID           string         `json:"uid"`
		Title         string         `json:"title"`
		Panels        []grafanaPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	b := readFile(t, "deploy/grafana/hookgate-dashboard.json")
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("hookgate-dashboard.json: %v", err)
	}
	if dash.SchemaVersion < 36 || dash.UID == "" || dash.Title == "" {
		t.Errorf("schemaVersion %d, uid %q, title %q: want a schemaVersion of at least 36, a uid and a title",
			dash.SchemaVersion, dash.UID, dash.Title)
	}
	var dsVar string
	for _, v := range dash.Templating.List {
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = v.Name
		}
	}
	if dsVar == "" {
		t.Error("no datasource variable of type prometheus")
	}
	dsOK := func(raw json.RawMessage) bool {
		var ds struct{ Type, UID string }
		if len(raw) == 0 || json.Unmarshal(raw, &ds) != nil {
			return false
		}
		return ds.Type == "prometheus" && (ds.UID == "${"+dsVar+"}" || ds.UID == "$"+dsVar || ds.UID == "prometheus")
	}

	goProcess := collectorMetrics(t)
	used := map[string]bool{}
	exprs := 0
	for _, p := range allPanels(dash.Panels) {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if !dsOK(p.Datasource) {
			t.Errorf("panel %q: datasource %s, want the $%s variable or uid prometheus", p.Title, p.Datasource, dsVar)
		}
		for _, tg := range p.Targets {
			if !dsOK(tg.Datasource) {
				t.Errorf("panel %q: target datasource %s", p.Title, tg.Datasource)
			}
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: expr %q selects no metric", p.Title, tg.Expr)
			}
			exprs++
			for _, n := range names {
				used[n] = true
				if why := checkMetricName(n, goProcess); why != "" {
					t.Errorf("panel %q: metric %s: %s", p.Title, n, why)
				}
			}
		}
	}
	if exprs == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, want := range []string{
		"hookgate_http_requests_total", "hookgate_auth_failures_total", "hookgate_publish_duration_seconds_bucket",
		"hookgate_http_request_duration_seconds_bucket", "hookgate_token_cache_requests_total",
		"hookgate_nats_connected", "hookgate_published_messages_total", "hookgate_publish_failures_total",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

func TestGrafanaProvisioning(t *testing.T) {
	ds := yamlDoc(t, "deploy/grafana/provisioning/datasources/prometheus.yml")
	if str(ds, "datasources", 0, "type") != "prometheus" || str(ds, "datasources", 0, "uid") != "prometheus" {
		t.Error("datasource provisioning: want a prometheus data source with uid prometheus")
	}
	c := loadCompose(t)
	var promSvc string
	for name, svc := range c.services {
		if strings.HasPrefix(str(svc, "image"), "prom/prometheus") {
			promSvc = name
		}
	}
	if u := str(ds, "datasources", 0, "url"); u != "http://"+promSvc+":9090" {
		t.Errorf("data source url %q, want http://%s:9090 (the compose service)", u, promSvc)
	}

	prov := yamlDoc(t, "deploy/grafana/provisioning/dashboards/hookgate.yml")
	dir := str(prov, "providers", 0, "options", "path")
	if dir == "" {
		t.Fatal("dashboard provisioning: no providers[0].options.path")
	}
	// docker-compose.yml mounts the dashboard JSON into that folder and the
	// provisioning folders where Grafana reads them.
	var grafana map[string]any
	for _, svc := range c.services {
		if strings.HasPrefix(str(svc, "image"), "grafana/grafana") {
			grafana = svc
		}
	}
	if grafana == nil {
		t.Fatal("no grafana service in docker-compose.yml")
	}
	mounts := composeBindMounts(grafana)
	var dashMounted, dsMounted, provMounted bool
	for src, dst := range mounts {
		s := path.Clean(src)
		switch {
		case s == "deploy/grafana/hookgate-dashboard.json" && path.Dir(dst) == path.Clean(dir):
			dashMounted = true
		case s == "deploy/grafana/provisioning" && dst == "/etc/grafana/provisioning":
			dsMounted, provMounted = true, true
		case s == "deploy/grafana/provisioning/datasources" && dst == "/etc/grafana/provisioning/datasources":
			dsMounted = true
		case s == "deploy/grafana/provisioning/dashboards" && dst == "/etc/grafana/provisioning/dashboards":
			provMounted = true
		}
	}
	if !dashMounted || !dsMounted || !provMounted {
		t.Errorf("grafana mounts %v: want the dashboard JSON in %s and both provisioning folders under /etc/grafana/provisioning", mounts, dir)
	}
}

// ----------------------------------------------------------- Prometheus

func TestPrometheusRulesMetricNames(t *testing.T) {
	doc := yamlDoc(t, "deploy/prometheus/hookgate.rules.yml")
	goProcess := collectorMetrics(t)
	var alerts []string
	for _, g := range list(doc, "groups") {
		for _, r := range list(g, "rules") {
			name := str(r, "alert")
			alerts = append(alerts, name)
			if !slices.Contains([]string{"critical", "warning", "info"}, str(r, "labels", "severity")) {
				t.Errorf("alert %s: severity label %q", name, str(r, "labels", "severity"))
			}
			for _, a := range []string{"summary", "description"} {
				if str(r, "annotations", a) == "" {
					t.Errorf("alert %s: no %s annotation", name, a)
				}
			}
			for _, n := range metricNames(str(r, "expr")) {
				if why := checkMetricName(n, goProcess, "up"); why != "" {
					t.Errorf("alert %s: metric %s: %s", name, n, why)
				}
			}
		}
	}
	for _, want := range []string{"HookgateDown", "HookgateNATSDisconnected", "HookgateHigh5xxRatio",
		"HookgatePublishLatencyHigh", "HookgateAuthFailuresSpike", "HookgateAppSeriesCapReached"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
	ops := string(readFile(t, "docs/operators.md"))
	for _, a := range alerts {
		if !strings.Contains(ops, a) {
			t.Errorf("docs/operators.md does not describe alert %s", a)
		}
	}
}

// promtool must be installed (apt-get install prometheus): its absence fails.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install -y prometheus): %v", err)
	}
	for _, args := range [][]string{
		{"check", "rules", "deploy/prometheus/hookgate.rules.yml"},
		{"check", "config", "deploy/prometheus/prometheus.yml"},
		{"check", "config", "deploy/prometheus/prometheus-compose.yml"},
		{"test", "rules", "deploy/prometheus/hookgate.rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

// ----------------------------------------------------------- Dockerfile

func TestDockerfile(t *testing.T) {
	src := string(readFile(t, "deploy/Dockerfile"))
	// Join continuation lines, drop comments.
	src = strings.ReplaceAll(src, "\\\n", " ")
	var lines []string
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	var stages []string
	var user string
	var finalStage []string
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			stages = append(stages, rest)
			user, finalStage = "", nil
		case "USER":
			user = strings.TrimSpace(rest)
		}
		finalStage = append(finalStage, l)
	}
	if len(stages) < 2 {
		t.Fatalf("stages %v: want a multi-stage build", stages)
	}
	if !strings.HasPrefix(stages[0], "golang:") {
		t.Errorf("builder stage FROM %s, want golang:1.26", stages[0])
	}
	if !strings.Contains(src, "GO_VERSION=1.26") && !strings.HasPrefix(stages[0], "golang:1.26") {
		t.Error("builder is not golang:1.26")
	}
	last := stages[len(stages)-1]
	if !strings.HasPrefix(last, "gcr.io/distroless/static") && last != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static or scratch", last)
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "root" || uid == "0" {
		t.Errorf("final stage USER %q, want a non-root user", user)
	}
	final := strings.Join(finalStage, "\n")
	for _, want := range []string{"EXPOSE 8080 9180", `ENTRYPOINT ["/hookgate"]`, `CMD ["serve"]`} {
		if !strings.Contains(final, want) {
			t.Errorf("final stage lacks %s", want)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=${VERSION}", "./cmd/hookgate"} {
		if !strings.Contains(src, want) {
			t.Errorf("build step lacks %s", want)
		}
	}
	// The release build uses the repo's CPU profile (PGO): it must exist and
	// be a pprof profile (gzipped protobuf).
	m := regexp.MustCompile(`-pgo=(\S+)`).FindStringSubmatch(src)
	if m == nil {
		t.Error("build step lacks -pgo=cmd/hookgate/hookgate.pgo")
	} else if pgo := readFile(t, m[1]); len(pgo) < 1024 || pgo[0] != 0x1f || pgo[1] != 0x8b {
		t.Errorf("%s is not a gzipped pprof profile (%d bytes)", m[1], len(pgo))
	}
	// The build context is the repo root; .dockerignore must keep what the
	// build needs.
	ignore := string(readFile(t, ".dockerignore"))
	for _, l := range strings.Split(ignore, "\n") {
		l = strings.TrimSpace(l)
		for _, need := range []string{"go.mod", "go.sum", "cmd", "*.go"} {
			if l == need || l == "/"+need {
				t.Errorf(".dockerignore excludes %s, which the build needs", need)
			}
		}
	}
}
