package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The Prometheus files of deploy/prometheus/. promtool judges them as
// Prometheus would (config and rule syntax, PromQL, templates, and the rules'
// unit tests); the tests in Go check what promtool cannot know: that the
// rules select series hookgate exports, carry the labels and annotations
// operators rely on, are each shown firing by a unit test fed with hookgate's
// series, and are described in docs/operators.md.

const (
	rulesFile     = "deploy/prometheus/hookgate.rules.yml"
	rulesTestFile = "deploy/prometheus/hookgate.rules.test.yml"
)

// promtool runs promtool with args in the repo root and returns its output.
// promtool must be installed (Debian package prometheus, which scripts/test.sh
// installs): its absence fails the test.
func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install -y prometheus): %v", err)
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// promExpr is a PromQL expression and where it comes from.
type promExpr struct {
	where, expr string
}

// promtoolCheckExprs has promtool check rules read each expression, written
// out as a recording rule.
func promtoolCheckExprs(t *testing.T, exprs []promExpr) {
	t.Helper()
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	type group struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	}
	g := group{Name: "exprs"}
	var index strings.Builder
	for i, e := range exprs {
		g.Rules = append(g.Rules, rule{Record: fmt.Sprintf("expr_%d", i), Expr: e.expr})
		fmt.Fprintf(&index, "  expr_%d: %s: %s\n", i, e.where, e.expr)
	}
	b, err := yaml.Marshal(map[string][]group{"groups": {g}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "exprs.rules.yml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := promtool(t, "check", "rules", f); err != nil {
		t.Errorf("promtool check rules: %v\n%s\nthe expressions:\n%s", err, out, index.String())
	}
}

// TestPromtool: both configs and the rules they load are valid, and the
// rules' unit tests pass.
func TestPromtool(t *testing.T) {
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"check", "config", "deploy/prometheus/prometheus.yml"},
		{"check", "config", "deploy/prometheus/prometheus-compose.yml"},
		{"test", "rules", rulesTestFile},
	} {
		out, err := promtool(t, args...)
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestPrometheusConfigs: both configs load the rules and scrape under the job
// name the rules select. (Which targets the compose config scrapes:
// TestComposePrometheus.)
func TestPrometheusConfigs(t *testing.T) {
	for _, config := range []string{"deploy/prometheus/prometheus.yml", "deploy/prometheus/prometheus-compose.yml"} {
		if files := strSlice(list(yamlDoc(t, config), "rule_files")); !slices.Contains(files, "hookgate.rules.yml") {
			t.Errorf("%s: rule_files %v, want hookgate.rules.yml", config, files)
		}
		if targets := scrapeTargets(t, config, "hookgate"); len(targets) == 0 {
			t.Errorf("%s: job hookgate has no target", config)
		}
	}
}

type alertRule struct {
	name, expr, severity string
	summary, description string
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	var rules []alertRule
	for _, g := range list(yamlDoc(t, rulesFile), "groups") {
		for _, r := range list(g, "rules") {
			rules = append(rules, alertRule{
				name:        str(r, "alert"),
				expr:        str(r, "expr"),
				severity:    str(r, "labels", "severity"),
				summary:     str(r, "annotations", "summary"),
				description: str(r, "annotations", "description"),
			})
		}
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rule", rulesFile)
	}
	return rules
}

// TestPrometheusAlerts: every alert has a severity and the annotations an
// operator reads, the alerts hookgate promises exist, and docs/operators.md
// describes each.
func TestPrometheusAlerts(t *testing.T) {
	rules := loadAlertRules(t)
	var alerts []string
	for _, r := range rules {
		alerts = append(alerts, r.name)
		if r.name == "" {
			t.Errorf("rule %q is not an alert", r.expr)
		}
		if !slices.Contains([]string{"critical", "warning", "info"}, r.severity) {
			t.Errorf("alert %s: severity label %q, want critical, warning or info", r.name, r.severity)
		}
		if r.summary == "" || r.description == "" {
			t.Errorf("alert %s: summary %q, description %q: want both annotations", r.name, r.summary, r.description)
		}
	}
	for _, want := range []string{"HookgateDown", "HookgateAllDown", "HookgateNATSDisconnected", "HookgateHigh5xxRatio",
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

// TestPrometheusRulesMetricNames: every series a rule selects is one hookgate
// exports, or up.
func TestPrometheusRulesMetricNames(t *testing.T) {
	exported := exportedSeries(t)
	for _, r := range loadAlertRules(t) {
		names, err := selectorNames(r.expr)
		if err != nil {
			t.Errorf("alert %s: %v", r.name, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("alert %s: expr %q selects no series", r.name, r.expr)
		}
		for _, n := range names {
			if why := checkMetricName(n, exported, "up"); why != "" {
				t.Errorf("alert %s: metric %s: %s", r.name, n, why)
			}
		}
	}
}

// TestPrometheusRuleUnitTests: the unit tests that promtool runs (TestPromtool)
// test hookgate.rules.yml, feed it only series hookgate exports (or up), and
// show every alert firing. Together with promtool they show that each alert
// can fire on hookgate's real series.
func TestPrometheusRuleUnitTests(t *testing.T) {
	doc := yamlDoc(t, rulesTestFile)
	if files := strSlice(list(doc, "rule_files")); !slices.Equal(files, []string{"hookgate.rules.yml"}) {
		t.Errorf("%s: rule_files %v, want [hookgate.rules.yml]", rulesTestFile, files)
	}
	exported := exportedSeries(t)
	fired := map[string]bool{}
	for _, test := range list(doc, "tests") {
		name := str(test, "name")
		for _, in := range list(test, "input_series") {
			metric, _, err := seriesLabels(str(in, "series"))
			if err != nil {
				t.Errorf("test %q: %v", name, err)
				continue
			}
			if why := checkMetricName(metric, exported, "up"); why != "" {
				t.Errorf("test %q: input series %s: %s", name, metric, why)
			}
		}
		for _, et := range list(test, "promql_expr_test") {
			for _, s := range list(et, "exp_samples") {
				_, labels, err := seriesLabels(str(s, "labels"))
				if err != nil {
					t.Errorf("test %q: %v", name, err)
					continue
				}
				if labels["alertstate"] == "firing" {
					fired[labels["alertname"]] = true
				}
			}
		}
	}
	for _, r := range loadAlertRules(t) {
		if !fired[r.name] {
			t.Errorf("alert %s: no test in %s expects it firing", r.name, rulesTestFile)
		}
	}
}

// TestPrometheusPaging: what pages. One gateway down is a warning and none
// up is critical; and the unit tests keep the cases that show it (promtool
// runs them): a quiet install that fires nothing at all for hours, one
// gateway of three down firing only a warning, all down firing one critical
// alert, a few 5xx at night paging nobody.
func TestPrometheusPaging(t *testing.T) {
	severity := map[string]string{}
	for _, r := range loadAlertRules(t) {
		severity[r.name] = r.severity
	}
	for alert, want := range map[string]string{"HookgateDown": "warning", "HookgateAllDown": "critical", "HookgateHigh5xxRatio": "critical"} {
		if severity[alert] != want {
			t.Errorf("alert %s: severity %q, want %s", alert, severity[alert], want)
		}
	}
	var quiet bool
	names := map[string]bool{}
	for _, test := range list(yamlDoc(t, rulesTestFile), "tests") {
		names[str(test, "name")] = true
		for _, et := range list(test, "promql_expr_test") {
			at, err := time.ParseDuration(str(et, "eval_time"))
			if str(et, "expr") == "ALERTS" && len(list(et, "exp_samples")) == 0 && err == nil && at >= time.Hour {
				quiet = true
			}
		}
	}
	if !quiet {
		t.Errorf("%s: no test expects ALERTS empty (nothing pending or firing) an hour or more into a quiet install", rulesTestFile)
	}
	for _, want := range []string{"one gateway of three down is a warning", "all gateways down is critical", "two 5xx at night do not page; a steady 10% at 0.1 requests/s does"} {
		if !names[want] {
			t.Errorf("%s: no test %q", rulesTestFile, want)
		}
	}
}
