package deploy_test

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Kubernetes base locked down and spread out: the NATS users' passwords
// from a Secret the base references but never ships, NetworkPolicies for
// every port, one NATS server per node, gateways spread over nodes and zones,
// and versioned images. (The users themselves: natsauth_test.go.)

// secretRef is where a container's environment variable comes from.
type secretRef struct{ secret, key string }

// envFrom returns a container's variables set from a Secret's key.
func envFrom(c any) map[string]secretRef {
	out := map[string]secretRef{}
	for _, e := range list(c, "env") {
		if ref := mapping(e, "valueFrom", "secretKeyRef"); ref != nil {
			out[str(e, "name")] = secretRef{str(ref, "name"), str(ref, "key")}
		}
	}
	return out
}

// natsContainer returns the NATS StatefulSet and its one container.
func natsContainer(t *testing.T, objs []k8sObject) (sts map[string]any, c any) {
	t.Helper()
	sts = find(t, objs, "apps/v1", "StatefulSet", "nats")
	containers := list(sts, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("NATS StatefulSet has %d containers, want 1", len(containers))
	}
	return sts, containers[0]
}

// TestKubernetesNATSSecrets: every variable nats.conf reads is set in the
// NATS container, each password from a key of a Secret, one Secret for all;
// the gateway logs in as gateway with the very key the NATS pods read for
// that user; and the base ships no Secret: no password is committed.
func TestKubernetesNATSSecrets(t *testing.T) {
	objs := loadKubernetes(t)
	_, nc := natsContainer(t, objs)
	natsEnv, natsSecrets := map[string]bool{}, envFrom(nc)
	for _, e := range list(nc, "env") {
		natsEnv[str(e, "name")] = true
	}
	for _, v := range configEnvVars([]byte(kubernetesNATSConf(t))) {
		if !natsEnv[v] {
			t.Errorf("nats.conf reads $%s, which the NATS container does not set", v)
		}
	}
	secrets := map[string]bool{}
	for _, u := range natsUsers {
		ref, ok := natsSecrets[u.passwordVar]
		if !ok || ref.key == "" {
			t.Errorf("NATS container: %s is not set from a Secret's key", u.passwordVar)
			continue
		}
		secrets[ref.secret] = true
	}
	if len(secrets) != 1 {
		t.Errorf("the NATS passwords come from the Secrets %v, want one", secrets)
	}

	_, _, gc := gateway(t, objs)
	if user := envOf(gc)["HOOKGATE_NATS_USER"]; user != "gateway" {
		t.Errorf("gateway: HOOKGATE_NATS_USER=%q, want gateway", user)
	}
	want := natsSecrets[natsUserByName("gateway").passwordVar]
	if got := envFrom(gc)["HOOKGATE_NATS_PASSWORD"]; got != want || got.secret == "" {
		t.Errorf("gateway: HOOKGATE_NATS_PASSWORD from %+v, want the Secret key NATS reads for gateway, %+v", got, want)
	}
	for _, o := range objs {
		if o.kind() == "Secret" {
			t.Errorf("%s ships Secret %s: create it in the cluster, never commit passwords", o.file, o.name())
		}
	}
}

// netpolRule is one ingress rule of a NetworkPolicy: its ports and peers.
type netpolRule struct {
	ports []int
	from  []any
}

func netpolRules(np map[string]any) []netpolRule {
	var rules []netpolRule
	for _, r := range list(np, "spec", "ingress") {
		var ports []int
		for _, p := range list(r, "ports") {
			n, _ := get(p, "port").(int)
			ports = append(ports, n)
		}
		rules = append(rules, netpolRule{ports: ports, from: list(r, "from")})
	}
	return rules
}

// namespacePeer is the namespace name a peer selects by
// kubernetes.io/metadata.name alone ("" if it is any other kind of peer).
func namespacePeer(peer any) string {
	ns := mapping(peer, "namespaceSelector", "matchLabels")
	if len(ns) != 1 || get(peer, "podSelector") != nil {
		return ""
	}
	return str(ns, "kubernetes.io/metadata.name")
}

// checkNetpol checks that np selects pods, holds Ingress in its policyTypes,
// and has one rule per port of want, each with exactly the peers want gives
// (checked by the function), and no other rule.
func checkNetpol(t *testing.T, name string, np, pods map[string]any, want map[int]func(peers []any) string) {
	t.Helper()
	if !selects(mapping(np, "spec", "podSelector", "matchLabels"), pods) {
		t.Errorf("NetworkPolicy %s does not select its pods", name)
	}
	if types := strSlice(list(np, "spec", "policyTypes")); !slices.Contains(types, "Ingress") {
		t.Errorf("NetworkPolicy %s: policyTypes %v, want Ingress", name, types)
	}
	seen := map[int]bool{}
	for _, r := range netpolRules(np) {
		if len(r.ports) != 1 || want[r.ports[0]] == nil {
			t.Errorf("NetworkPolicy %s: a rule for ports %v, want one rule for each of %v", name, r.ports, slices.Sorted(maps.Keys(want)))
			continue
		}
		p := r.ports[0]
		seen[p] = true
		if len(r.from) == 0 {
			t.Errorf("NetworkPolicy %s: port %d is open to every pod", name, p)
			continue
		}
		if why := want[p](r.from); why != "" {
			t.Errorf("NetworkPolicy %s: port %d: %s", name, p, why)
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("NetworkPolicy %s: no rule for port %d: nothing may reach it", name, p)
		}
	}
}

// TestKubernetesNetworkPolicies: the gateways take 8080 from the Ingress
// controller's namespace and 9180 from the monitoring one; NATS takes 4222
// only from pods labelled as its clients (the gateways are), 6222 only from
// NATS pods, 8222 from monitoring; every port a policy opens is one the pods
// listen on.
func TestKubernetesNetworkPolicies(t *testing.T) {
	objs := loadKubernetes(t)
	_, gwPods, gc := gateway(t, objs)
	sts, nc := natsContainer(t, objs)
	natsPods := mapping(sts, "spec", "template", "metadata", "labels")

	onlyNamespace := func(ns string) func([]any) string {
		return func(peers []any) string {
			if len(peers) != 1 || namespacePeer(peers[0]) != ns {
				return "want only the namespace " + ns + " (by kubernetes.io/metadata.name)"
			}
			return ""
		}
	}
	checkNetpol(t, "hookgate", find(t, objs, "networking.k8s.io/v1", "NetworkPolicy", "hookgate"), gwPods, map[int]func([]any) string{
		8080: onlyNamespace("ingress-nginx"),
		9180: onlyNamespace("monitoring"),
	})

	var clientLabel map[string]any
	checkNetpol(t, "nats", find(t, objs, "networking.k8s.io/v1", "NetworkPolicy", "nats"), natsPods, map[int]func([]any) string{
		4222: func(peers []any) string {
			if len(peers) != 1 || get(peers[0], "namespaceSelector") != nil {
				return "want one peer: pods of this namespace with a client label"
			}
			clientLabel = mapping(peers[0], "podSelector", "matchLabels")
			if len(clientLabel) == 0 || selects(clientLabel, natsPods) {
				return "want pods selected by a label of NATS clients"
			}
			return ""
		},
		6222: func(peers []any) string {
			if len(peers) != 1 || get(peers[0], "namespaceSelector") != nil || !selects(mapping(peers[0], "podSelector", "matchLabels"), natsPods) {
				return "want only the NATS pods of this namespace"
			}
			return ""
		},
		8222: onlyNamespace("monitoring"),
	})
	if clientLabel != nil && !selects(clientLabel, gwPods) {
		t.Errorf("the gateway pods lack the NATS client label %v: they could not reach NATS", clientLabel)
	}
	for port, c := range map[int]any{8080: gc, 9180: gc, 4222: nc, 6222: nc, 8222: nc} {
		if !slices.ContainsFunc(list(c, "ports"), func(p any) bool { n, _ := get(p, "containerPort").(int); return n == port }) {
			t.Errorf("a NetworkPolicy opens port %d, which no container listens on", port)
		}
	}
}

// TestKubernetesSpread: gateways spread over nodes and zones without ever
// staying Pending for it; one NATS server per node, required; NATS memory
// request = limit with GOMEMLIMIT below it; at most one NATS pod down.
func TestKubernetesSpread(t *testing.T) {
	objs := loadKubernetes(t)
	dep, gwPods, _ := gateway(t, objs)
	keys := map[string]bool{}
	for _, c := range list(dep, "spec", "template", "spec", "topologySpreadConstraints") {
		if !selects(mapping(c, "labelSelector", "matchLabels"), gwPods) {
			t.Errorf("gateway topology spread on %s does not select the gateway pods", str(c, "topologyKey"))
			continue
		}
		if str(c, "whenUnsatisfiable") != "ScheduleAnyway" {
			t.Errorf("gateway topology spread on %s: whenUnsatisfiable %q, want ScheduleAnyway (never Pending for it)", str(c, "topologyKey"), str(c, "whenUnsatisfiable"))
		}
		keys[str(c, "topologyKey")] = true
	}
	for _, k := range []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"} {
		if !keys[k] {
			t.Errorf("gateways are not spread over %s", k)
		}
	}

	sts, nc := natsContainer(t, objs)
	natsPods := mapping(sts, "spec", "template", "metadata", "labels")
	var perNode bool
	for _, term := range list(sts, "spec", "template", "spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution") {
		if str(term, "topologyKey") == "kubernetes.io/hostname" && selects(mapping(term, "labelSelector", "matchLabels"), natsPods) {
			perNode = true
		}
	}
	if !perNode {
		t.Error("NATS pods lack a required anti-affinity on kubernetes.io/hostname: two replicas of the stream could share a node")
	}
	if req, lim := str(nc, "resources", "requests", "memory"), str(nc, "resources", "limits", "memory"); req != lim || req == "" {
		t.Errorf("NATS memory request %q, limit %q: want them equal", req, lim)
	}
	if !strings.HasSuffix(envOf(nc)["GOMEMLIMIT"], "MiB") {
		t.Errorf("NATS GOMEMLIMIT %q, want one in MiB under the limit", envOf(nc)["GOMEMLIMIT"])
	}
	pdb := find(t, objs, "policy/v1", "PodDisruptionBudget", "nats")
	if n, _ := get(pdb, "spec", "maxUnavailable").(int); n != 1 {
		t.Errorf("PodDisruptionBudget nats: maxUnavailable %v, want 1", get(pdb, "spec", "maxUnavailable"))
	}
}

// TestKubernetesImagesVersioned: the NATS image is the nats-server release
// the tests run, and the gateway image (and the kustomization's override of
// it) names a version, not latest.
func TestKubernetesImagesVersioned(t *testing.T) {
	objs := loadKubernetes(t)
	_, nc := natsContainer(t, objs)
	if want := "nats:" + natsServerVersion(t) + "-alpine"; str(nc, "image") != want {
		t.Errorf("NATS image %q, want %s (go.mod's nats-server)", str(nc, "image"), want)
	}
	if cmd := strSlice(list(nc, "command")); len(cmd) == 0 || cmd[0] != "nats-server" {
		t.Errorf("NATS command %v, want nats-server (on the alpine image's PATH)", cmd)
	}
	_, _, gc := gateway(t, objs)
	tags := []string{str(gc, "image")}
	for _, img := range list(yamlDoc(t, "deploy/kubernetes/kustomization.yaml"), "images") {
		if str(img, "name") == "hookgate" {
			tags = append(tags, str(img, "newName")+":"+str(img, "newTag"))
		}
	}
	for _, img := range tags {
		if _, tag, _ := strings.Cut(img, ":"); tag == "" || tag == "latest" {
			t.Errorf("gateway image %q, want a version tag", img)
		}
	}
}

// TestStreamLimitUnderStore: in both shipped topologies the gateways create
// the stream with a size limit under each NATS server's JetStream store, so
// the oldest webhooks go before the store fills (and the 80% alert can
// fire), with room left for the bucket.
func TestStreamLimitUnderStore(t *testing.T) {
	for _, c := range shippedNATSConfigs(t) {
		opts := loadNATSConfig(t, c.file, c.nameVar, "n1")
		var limits []string
		switch c.name {
		case "compose":
			comp := loadCompose(t)
			for _, g := range comp.gateways {
				limits = append(limits, composeEnv(comp.services[g])["HOOKGATE_STREAM_MAX_BYTES"])
			}
		case "kubernetes":
			_, _, gc := gateway(t, loadKubernetes(t))
			limits = append(limits, envOf(gc)["HOOKGATE_STREAM_MAX_BYTES"])
		}
		for _, l := range limits {
			n, err := strconv.ParseInt(l, 10, 64)
			if err != nil || n <= 0 || n > opts.JetStreamMaxStore*9/10 {
				t.Errorf("%s: HOOKGATE_STREAM_MAX_BYTES=%q, want a limit at most 90%% of the JetStream store (%d bytes)", c.name, l, opts.JetStreamMaxStore)
			}
		}
	}
}
