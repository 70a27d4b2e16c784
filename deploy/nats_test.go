package deploy_test

import (
	"crypto/tls"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// The nats-server configs of the compose stack (deploy/nats/) and of the
// Kubernetes StatefulSet (the nats-config ConfigMap), read with nats-server's
// own parser, as `nats-server -t` does. Their users: natsauth_test.go.

// loadNATSConfig parses file as nats-server does, with $envName set to
// serverName and the users' passwords set, and checks what both configs
// share: the server name from the environment, JetStream on the /data
// volume, a named cluster on 6222, clients on 4222 and monitoring on 8222.
func loadNATSConfig(t *testing.T, file, envName, serverName string) *server.Options {
	t.Helper()
	setNATSEnv(t, envName, serverName)
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
	if !strings.HasPrefix(opts.StoreDir, "/data") {
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

// routeHosts returns a config's routes as sorted host:port.
func routeHosts(opts *server.Options) []string {
	var hosts []string
	for _, r := range opts.Routes {
		hosts = append(hosts, r.Hostname()+":"+r.Port())
	}
	sort.Strings(hosts)
	return hosts
}

// TestComposeNATSConfig: each compose NATS node loads the mounted config,
// named after its service, routed to all three nodes over mutual TLS, serving
// clients over TLS, with its JetStream data on a named volume.
func TestComposeNATSConfig(t *testing.T) {
	c := loadCompose(t)
	shipped := shippedNATSConfigs(t)[0] // compose's, its TLS files made by gencert
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
		if name := composeEnv(svc)["NATS_SERVER_NAME"]; name != n {
			t.Errorf("%s: NATS_SERVER_NAME=%q, want the service name", n, name)
		}
		if path.Clean(conf) != "deploy/nats/nats-cluster.conf" && path.Clean(conf) != "./deploy/nats/nats-cluster.conf" {
			t.Errorf("%s mounts %s, want deploy/nats/nats-cluster.conf", n, conf)
		}
		opts := loadNATSConfig(t, shipped.file, "NATS_SERVER_NAME", n)
		if got := routeHosts(opts); !slices.Equal(got, want) {
			t.Errorf("%s: routes %v, want %v", conf, got, want)
		}
		if opts.TLSConfig == nil || len(opts.TLSConfig.Certificates) == 0 {
			t.Errorf("%s: clients are not served over TLS", conf)
		}
		if opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Errorf("%s: routes are not mutual TLS (cluster tls with verify: true)", conf)
		}
		if !slices.Contains(composeNamedVolumes(svc), n+"-data") {
			t.Errorf("%s: JetStream data is not on a named volume (want %s-data:/data)", n, n)
		}
	}
}

// TestKubernetesNATSConfig: the ConfigMap's nats.conf is a valid nats-server
// config whose routes are the StatefulSet's three pods through its headless
// Service, and each pod gets its server name from its own name.
func TestKubernetesNATSConfig(t *testing.T) {
	objs := loadKubernetes(t)
	sts := find(t, objs, "apps/v1", "StatefulSet", "nats")
	headless := str(sts, "spec", "serviceName")
	conf := str(find(t, objs, "v1", "ConfigMap", "nats-config"), "data", "nats.conf")
	if conf == "" {
		t.Fatal("ConfigMap nats-config has no nats.conf")
	}
	f := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := loadNATSConfig(t, f, "SERVER_NAME", "nats-0")
	want := []string{"nats-0." + headless + ":6222", "nats-1." + headless + ":6222", "nats-2." + headless + ":6222"}
	if got := routeHosts(opts); !slices.Equal(got, want) {
		t.Errorf("nats.conf routes %v, want %v", got, want)
	}
	var serverNameFromPod bool
	for _, e := range list(sts, "spec", "template", "spec", "containers", 0, "env") {
		if str(e, "name") == "SERVER_NAME" && str(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name" {
			serverNameFromPod = true
		}
	}
	if !serverNameFromPod {
		t.Error("NATS container does not set SERVER_NAME from metadata.name")
	}
}
