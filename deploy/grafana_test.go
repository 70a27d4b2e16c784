package deploy_test

import (
	"encoding/json"
	"path"
	"strings"
	"testing"
)

// The Grafana dashboard (deploy/grafana/hookgate-dashboard.json) and the
// provisioning that loads it in the compose stack.

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

type grafanaDashboard struct {
	SchemaVersion int            `json:"schemaVersion"`
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"` // a string, or {"query": "..."}
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	var dash grafanaDashboard
	if err := json.Unmarshal(readFile(t, "deploy/grafana/hookgate-dashboard.json"), &dash); err != nil {
		t.Fatalf("hookgate-dashboard.json: %v", err)
	}
	return dash
}

// allPanels flattens rows' nested panels.
func allPanels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// TestGrafanaDashboard: the dashboard can be imported, and every panel and
// query reads from Prometheus through the dashboard's data source variable.
func TestGrafanaDashboard(t *testing.T) {
	dash := loadDashboard(t)
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
		}
	}
}

// grafanaIntervals replaces Grafana's interval variables, which stand where
// PromQL wants a duration; $job and $instance stand in label values, which
// PromQL takes as they are.
var grafanaIntervals = strings.NewReplacer(
	"${__rate_interval}", "5m", "$__rate_interval", "5m",
	"${__interval}", "5m", "$__interval", "5m",
	"${__range}", "5m", "$__range", "5m",
)

// dashboardQueries returns every panel query and the series selector of every
// label_values(selector, label) variable, with Grafana's interval variables
// replaced by a duration so that they parse as PromQL.
func dashboardQueries(t *testing.T, dash grafanaDashboard) []promExpr {
	t.Helper()
	var qs []promExpr
	for _, p := range allPanels(dash.Panels) {
		for _, tg := range p.Targets {
			qs = append(qs, promExpr{"panel " + p.Title, grafanaIntervals.Replace(tg.Expr)})
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, ok := v.Query.(string)
		if !ok {
			q = str(v.Query, "query")
		}
		args, ok := strings.CutPrefix(strings.TrimSpace(q), "label_values(")
		if !ok || !strings.HasSuffix(args, ")") {
			t.Errorf("variable %s: query %q: want label_values(selector, label)", v.Name, q)
			continue
		}
		// The label is the last argument; label_values(label) has no selector.
		args = strings.TrimSuffix(args, ")")
		if i := strings.LastIndexByte(args, ','); i >= 0 {
			qs = append(qs, promExpr{"variable " + v.Name, args[:i]})
		}
	}
	if len(qs) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return qs
}

// TestGrafanaDashboardQueriesParse has promtool check every query of the
// dashboard.
func TestGrafanaDashboardQueriesParse(t *testing.T) {
	promtoolCheckExprs(t, dashboardQueries(t, loadDashboard(t)))
}

// TestGrafanaDashboardMetricNames: every series the dashboard selects is one
// hookgate exports, and the dashboard shows the metrics an operator needs.
func TestGrafanaDashboardMetricNames(t *testing.T) {
	exported := exportedSeries(t)
	used := map[string]bool{}
	for _, q := range dashboardQueries(t, loadDashboard(t)) {
		names, err := selectorNames(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: expr %q selects no metric", q.where, q.expr)
		}
		for _, n := range names {
			used[n] = true
			if why := checkMetricName(n, exported); why != "" {
				t.Errorf("%s: metric %s: %s", q.where, n, why)
			}
		}
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

// TestGrafanaProvisioning: the compose Grafana gets the Prometheus data source
// the dashboard expects (uid prometheus) at the compose Prometheus, and the
// dashboard JSON where its provisioning looks.
func TestGrafanaProvisioning(t *testing.T) {
	c := loadCompose(t)
	promSvc, _ := c.serviceByImage(t, "prom/prometheus")
	ds := yamlDoc(t, "deploy/grafana/provisioning/datasources/prometheus.yml")
	if str(ds, "datasources", 0, "type") != "prometheus" || str(ds, "datasources", 0, "uid") != "prometheus" {
		t.Error("datasource provisioning: want a prometheus data source with uid prometheus")
	}
	if u := str(ds, "datasources", 0, "url"); u != "http://"+promSvc+":9090" {
		t.Errorf("data source url %q, want http://%s:9090 (the compose service)", u, promSvc)
	}

	prov := yamlDoc(t, "deploy/grafana/provisioning/dashboards/hookgate.yml")
	dir := str(prov, "providers", 0, "options", "path")
	if dir == "" {
		t.Fatal("dashboard provisioning: no providers[0].options.path")
	}
	_, grafana := c.serviceByImage(t, "grafana/grafana")
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
