package deploy_test

import (
	"maps"
	"net/url"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The docker-compose.yml at the repo root: its services, and how they agree
// with the files of deploy/ they build from or mount.

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

// serviceByImage returns the one service whose image is image (any tag).
func (c composeFile) serviceByImage(t *testing.T, image string) (string, map[string]any) {
	t.Helper()
	var names []string
	for name, svc := range c.services {
		if img := str(svc, "image"); img == image || strings.HasPrefix(img, image+":") {
			names = append(names, name)
		}
	}
	if len(names) != 1 {
		t.Fatalf("docker-compose.yml: services %v run %s, want exactly one", names, image)
	}
	return names[0], c.services[names[0]]
}

// composeEnv returns a service's environment, in either of compose's forms.
func composeEnv(svc map[string]any) map[string]string {
	env := map[string]string{}
	switch e := svc["environment"].(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = str(v)
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

func isHostPath(src string) bool {
	return strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") || strings.HasPrefix(src, "~")
}

// composeBindMounts returns a service's bind mounts as host path -> target.
func composeBindMounts(svc map[string]any) map[string]string {
	out := map[string]string{}
	for _, v := range list(svc, "volumes") {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && isHostPath(parts[0]) {
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
			if ok && !isHostPath(src) {
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

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	if len(c.nats) != 3 {
		t.Errorf("NATS services %v, want 3 (a cluster of three nodes)", c.nats)
	}
	if len(c.gateways) != 2 {
		t.Errorf("gateway services built from deploy/Dockerfile %v, want 2", c.gateways)
	}
	c.serviceByImage(t, "prom/prometheus")
	c.serviceByImage(t, "grafana/grafana")
	want := "nats:" + natsServerVersion(t) + "-alpine"
	for _, n := range c.nats {
		if got := str(c.services[n], "image"); got != want {
			t.Errorf("service %s: image %q, want %s (the nats-server hookgate is tested with, with busybox's wget for the healthcheck)", n, got, want)
		}
	}
}

// natsServerVersion is the nats-server release go.mod requires: the one the
// tests run and hookgate embeds ("2.15.2").
func natsServerVersion(t *testing.T) string {
	t.Helper()
	for line := range strings.Lines(string(readFile(t, "go.mod"))) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "github.com/nats-io/nats-server/v2 v"); ok {
			return strings.Fields(v)[0]
		}
	}
	t.Fatal("go.mod does not require github.com/nats-io/nats-server/v2")
	return ""
}

// TestComposeImagesVersioned: every image names a version: no latest, no
// tag left out.
func TestComposeImagesVersioned(t *testing.T) {
	c := loadCompose(t)
	for _, name := range slices.Sorted(maps.Keys(c.services)) {
		img := str(c.services[name], "image")
		if img == "" {
			t.Errorf("service %s has no image name: a build gets an unversioned one", name)
			continue
		}
		_, tag, ok := strings.Cut(img, ":")
		if !ok || tag == "" || tag == "latest" || strings.HasPrefix(tag, "${") && strings.Contains(tag, ":-latest}") {
			t.Errorf("service %s: image %q, want a version tag", name, img)
		}
	}
}

// TestComposePortsOnLoopback: every published port is bound to 127.0.0.1,
// so nothing of the stack is reachable from the network.
func TestComposePortsOnLoopback(t *testing.T) {
	c := loadCompose(t)
	n := 0
	for _, name := range slices.Sorted(maps.Keys(c.services)) {
		for _, p := range list(c.services[name], "ports") {
			n++
			switch p := p.(type) {
			case string:
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("service %s publishes %q, want 127.0.0.1:HOST:CONTAINER", name, p)
				}
			case map[string]any:
				if str(p, "host_ip") != "127.0.0.1" {
					t.Errorf("service %s publishes %v, want host_ip 127.0.0.1", name, p)
				}
			default:
				t.Errorf("service %s publishes %v, want 127.0.0.1:HOST:CONTAINER", name, p)
			}
		}
	}
	if n == 0 {
		t.Error("no published port at all")
	}
}

// composeTLS is where the compose NATS servers' TLS files come from: the
// service that writes them into a named volume, and where the NATS services
// mount that volume.
type composeTLS struct {
	service string // runs deploy/nats/gencert
	volume  string // the named volume it writes
	mount   string // where every NATS service mounts it
	hosts   string // gencert's -hosts
}

// composeNATSTLS finds the certificate service and checks that every NATS
// service mounts its volume at one place, after it has run.
func composeNATSTLS(t *testing.T) composeTLS {
	t.Helper()
	c := loadCompose(t)
	var tls composeTLS
	for _, name := range slices.Sorted(maps.Keys(c.services)) {
		svc := c.services[name]
		cmd := strSlice(list(svc, "command"))
		if !slices.ContainsFunc(cmd, func(a string) bool { return strings.Contains(a, "gencert") }) {
			continue
		}
		if tls.service != "" {
			t.Fatalf("services %s and %s both run gencert", tls.service, name)
		}
		tls.service = name
		flags := map[string]string{}
		for i, a := range cmd {
			if strings.HasPrefix(a, "-") && i+1 < len(cmd) {
				flags[a] = cmd[i+1]
			}
		}
		tls.hosts = flags["-hosts"]
		for src, dst := range composeVolumeMounts(svc) {
			if dst == flags["-dir"] {
				tls.volume = src
			}
		}
		for src, dst := range composeBindMounts(svc) {
			if !slices.Contains(cmd, dst) {
				continue
			}
			if path.Clean(src) != "deploy/nats/gencert/main.go" && path.Clean(src) != "./deploy/nats/gencert/main.go" {
				t.Errorf("%s runs %s, mounted from %s, want deploy/nats/gencert/main.go", name, dst, src)
			}
		}
	}
	if tls.service == "" || tls.volume == "" || tls.hosts == "" {
		t.Fatalf("no service writes the NATS TLS files into a named volume (go run deploy/nats/gencert/main.go -dir DIR -hosts ...): %+v", tls)
	}
	for _, n := range c.nats {
		svc := c.services[n]
		mount := composeVolumeMounts(svc)[tls.volume]
		if mount == "" || tls.mount != "" && mount != tls.mount {
			t.Fatalf("%s mounts the volume %s at %q, want it mounted, at one place on every NATS service", n, tls.volume, mount)
		}
		tls.mount = mount
		if got := str(svc, "depends_on", tls.service, "condition"); got != "service_completed_successfully" {
			t.Errorf("%s: depends_on %s condition %q, want service_completed_successfully", n, tls.service, got)
		}
		if !slices.Contains(strings.Split(tls.hosts, ","), n) {
			t.Errorf("gencert -hosts %s lacks %s: its clients and routes could not verify it", tls.hosts, n)
		}
	}
	return tls
}

// composeVolumeMounts returns a service's named volumes as volume -> target.
func composeVolumeMounts(svc map[string]any) map[string]string {
	out := map[string]string{}
	for _, v := range list(svc, "volumes") {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && !isHostPath(parts[0]) {
				out[parts[0]] = parts[1]
			}
		case map[string]any:
			if str(v, "type") == "volume" {
				out[str(v, "source")] = str(v, "target")
			}
		}
	}
	return out
}

// composeSecretRef is the variable an environment value interpolates
// without a default: ${NAME:?message} or ${NAME?message}; "" for anything
// else (a literal, or a default that would ship a password).
func composeSecretRef(v string) string {
	inner, ok := strings.CutPrefix(v, "${")
	if !ok || !strings.HasSuffix(inner, "}") {
		return ""
	}
	name, _, found := strings.Cut(strings.TrimSuffix(inner, "}"), "?")
	if !found {
		return ""
	}
	return strings.TrimSuffix(name, ":")
}

// TestComposeNATSLockedDown: each NATS node gets every user's password from
// the environment (required, no default), is healthy once its JetStream is
// on, and starts after the certificates are written; each gateway logs in
// as gateway with that same password, over TLS with the CA of that volume,
// and starts once every NATS node is healthy.
func TestComposeNATSLockedDown(t *testing.T) {
	c := loadCompose(t)
	tls := composeNATSTLS(t)
	for _, n := range c.nats {
		svc := c.services[n]
		env := composeEnv(svc)
		for _, u := range natsUsers {
			if ref := composeSecretRef(env[u.passwordVar]); ref != u.passwordVar {
				t.Errorf("%s: %s=%q, want ${%s:?...} (from .env, required, no default)", n, u.passwordVar, env[u.passwordVar], u.passwordVar)
			}
		}
		test := strings.Join(strSlice(list(svc, "healthcheck", "test")), " ")
		if !strings.HasPrefix(test, "CMD wget") || !strings.Contains(test, ":8222/healthz?js-enabled-only=true") {
			t.Errorf("%s: healthcheck %q, want CMD wget ... :8222/healthz?js-enabled-only=true", n, test)
		}
	}
	for _, g := range c.gateways {
		svc := c.services[g]
		env := composeEnv(svc)
		if env["HOOKGATE_NATS_USER"] != "gateway" {
			t.Errorf("%s: HOOKGATE_NATS_USER=%q, want gateway", g, env["HOOKGATE_NATS_USER"])
		}
		if ref := composeSecretRef(env["HOOKGATE_NATS_PASSWORD"]); ref != natsUserByName("gateway").passwordVar {
			t.Errorf("%s: HOOKGATE_NATS_PASSWORD=%q, want ${NATS_GATEWAY_PASSWORD:?...}", g, env["HOOKGATE_NATS_PASSWORD"])
		}
		if want := composeVolumeMounts(svc)[tls.volume] + "/ca.pem"; env["HOOKGATE_NATS_TLS_CA"] != want || want == "/ca.pem" {
			t.Errorf("%s: HOOKGATE_NATS_TLS_CA=%q, want the CA of the volume %s (%s)", g, env["HOOKGATE_NATS_TLS_CA"], tls.volume, want)
		}
		for _, n := range c.nats {
			if got := str(svc, "depends_on", n, "condition"); got != "service_healthy" {
				t.Errorf("%s: depends_on %s condition %q, want service_healthy", g, n, got)
			}
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

// TestComposeGateways: each gateway stores with 3 replicas on the compose
// NATS cluster, reaching every node of it.
func TestComposeGateways(t *testing.T) {
	c := loadCompose(t)
	if len(c.gateways) == 0 {
		t.Fatal("no gateway service (build.dockerfile: deploy/Dockerfile)")
	}
	for _, g := range c.gateways {
		env := composeEnv(c.services[g])
		grace, err := time.ParseDuration(str(c.services[g], "stop_grace_period"))
		if need := shutdownBudget(t, env); err != nil || grace <= need {
			t.Errorf("%s: stop_grace_period %q, want more than --shutdown-delay + --shutdown-timeout = %s", g, str(c.services[g], "stop_grace_period"), need)
		}
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
			if err != nil || pu.Scheme != "tls" || pu.Port() != "4222" {
				t.Errorf("%s: HOOKGATE_NATS_URL entry %q: want tls://HOST:4222 (the NATS servers require TLS)", g, u)
				continue
			}
			hosts = append(hosts, pu.Hostname())
		}
		sort.Strings(hosts)
		if !slices.Equal(hosts, c.nats) {
			t.Errorf("%s: HOOKGATE_NATS_URL lists %v, want every NATS service %v", g, hosts, c.nats)
		}
	}
}

// composeBind is one bind mount of a service, in either of compose's forms.
type composeBind struct {
	src, dst string
	ro       bool
}

func composeBinds(svc map[string]any) []composeBind {
	var out []composeBind
	for _, v := range list(svc, "volumes") {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && isHostPath(parts[0]) {
				ro := len(parts) == 3 && slices.Contains(strings.Split(parts[2], ","), "ro")
				out = append(out, composeBind{parts[0], parts[1], ro})
			}
		case map[string]any:
			if str(v, "type") == "bind" {
				out = append(out, composeBind{str(v, "source"), str(v, "target"), str(v, "read_only") == "true"})
			}
		}
	}
	return out
}

// TestComposeSecretKeys: both gateways read one signing key ring
// (HOOKGATE_SECRET_KEYS) from a directory of the repo bind-mounted
// read-only, whose .gitignore keeps the ring out of git and which the build
// context leaves out; the file's header comment says how to make the ring
// at that path.
func TestComposeSecretKeys(t *testing.T) {
	c := loadCompose(t)
	var ring string // the ring's host path, the same for every gateway
	for _, g := range c.gateways {
		env := composeEnv(c.services[g])
		p := env["HOOKGATE_SECRET_KEYS"]
		if !path.IsAbs(p) {
			t.Errorf("%s: HOOKGATE_SECRET_KEYS=%q, want the path of the mounted key ring", g, p)
			continue
		}
		var host string
		for _, b := range composeBinds(c.services[g]) {
			rel, ok := strings.CutPrefix(p, strings.TrimSuffix(b.dst, "/")+"/")
			if !ok {
				continue
			}
			if !b.ro {
				t.Errorf("%s: %s is mounted writable at %s, want :ro", g, b.src, b.dst)
			}
			host = path.Join(b.src, rel)
		}
		switch {
		case host == "":
			t.Errorf("%s: HOOKGATE_SECRET_KEYS=%s, and no bind mount holds it", g, p)
		case ring == "":
			ring = host
		case host != ring:
			t.Errorf("%s reads the key ring %s, another gateway %s: every gateway needs the same ring", g, host, ring)
		}
	}
	if ring == "" {
		t.Fatal("no gateway reads a key ring")
	}
	dir, name := path.Split(ring)
	ignored := false
	for line := range strings.Lines(string(readFile(t, path.Join(dir, ".gitignore")))) {
		switch strings.TrimSpace(line) {
		case "*", name, "/" + name:
			ignored = true
		case "!" + name, "!/" + name:
			ignored = false
		}
	}
	if !ignored {
		t.Errorf("%s.gitignore does not ignore %s: the key ring must never be committed", dir, name)
	}
	if !dockerignored(t, ring) {
		t.Errorf(".dockerignore does not leave %s out of the build context", ring)
	}
	if !strings.Contains(string(readFile(t, "docker-compose.yml")), "> "+ring+")") {
		t.Errorf("docker-compose.yml's header does not say how to make the key ring at %s", ring)
	}
}

// dockerignored reports whether .dockerignore leaves the repo path p out of
// the build context by naming it or a directory above it.
func dockerignored(t *testing.T, p string) bool {
	t.Helper()
	for line := range strings.Lines(string(readFile(t, ".dockerignore"))) {
		if l := strings.Trim(strings.TrimSpace(line), "/"); l != "" && !strings.HasPrefix(l, "#") && strings.HasPrefix(p+"/", l+"/") {
			return true
		}
	}
	return false
}

// TestComposeEnvOutOfBuildContext: .env, where the NATS passwords are,
// stays out of the build context (the build stage copies the whole context).
func TestComposeEnvOutOfBuildContext(t *testing.T) {
	if !dockerignored(t, ".env") {
		t.Error(".dockerignore does not leave .env (the NATS passwords) out of the build context")
	}
}

// TestComposePrometheus: the Prometheus service loads prometheus-compose.yml
// and the rule files it names, and that config scrapes exactly the gateways'
// metrics listeners under the job name the rules select (job="hookgate").
// promtool check config (TestPromtool) checks the file itself.
func TestComposePrometheus(t *testing.T) {
	c := loadCompose(t)
	name, svc := c.serviceByImage(t, "prom/prometheus")
	const config = "deploy/prometheus/prometheus-compose.yml"
	mounts := map[string]string{}
	for src, dst := range composeBindMounts(svc) {
		mounts[path.Clean(src)] = dst
	}
	if got := mounts[config]; got != "/etc/prometheus/prometheus.yml" {
		t.Errorf("service %s mounts %s at %q, want /etc/prometheus/prometheus.yml", name, config, got)
	}
	doc := yamlDoc(t, config)
	for _, f := range strSlice(list(doc, "rule_files")) {
		src := path.Join("deploy/prometheus", f)
		if want := path.Join("/etc/prometheus", f); mounts[src] != want {
			t.Errorf("%s loads rule file %s: service %s mounts %s at %q, want %s", config, f, name, src, mounts[src], want)
		}
	}
	var want []string
	for _, g := range c.gateways {
		want = append(want, g+":9180")
	}
	if got := scrapeTargets(t, config, "hookgate"); !slices.Equal(got, want) {
		t.Errorf("%s: job hookgate scrapes %v, want the gateways' metrics listeners %v", config, got, want)
	}
}

// scrapeTargets returns the sorted static targets of one job of a Prometheus
// config, and fails the test when the config has no such job.
func scrapeTargets(t *testing.T, config, job string) []string {
	t.Helper()
	var jobs []string
	for _, sc := range list(yamlDoc(t, config), "scrape_configs") {
		jobs = append(jobs, str(sc, "job_name"))
		if str(sc, "job_name") != job {
			continue
		}
		var targets []string
		for _, static := range list(sc, "static_configs") {
			targets = append(targets, strSlice(list(static, "targets"))...)
		}
		sort.Strings(targets)
		return targets
	}
	t.Fatalf("%s: scrape jobs %v, want one named %s (the rules and the dashboard select job=%q)", config, jobs, job, job)
	return nil
}

// Each gateway's healthcheck runs the image's own binary (it has no shell):
// `hookgate healthcheck` at the path the Dockerfile's ENTRYPOINT names.
func TestComposeGatewaysHealthcheck(t *testing.T) {
	c := loadCompose(t)
	dockerfile := string(readFile(t, "deploy/Dockerfile"))
	for _, name := range c.gateways {
		hc, _ := c.services[name]["healthcheck"].(map[string]any)
		test, _ := hc["test"].([]any)
		if len(test) != 3 || test[0] != "CMD" || test[2] != "healthcheck" {
			t.Errorf("%s: healthcheck test %v, want [CMD <binary> healthcheck]", name, hc["test"])
			continue
		}
		if !strings.Contains(dockerfile, `ENTRYPOINT ["`+test[1].(string)+`"]`) {
			t.Errorf("%s: healthcheck runs %v, which is not the image's ENTRYPOINT", name, test[1])
		}
	}
}
