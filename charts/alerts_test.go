package charts_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/herald-dev/herald/internal/testenv"
)

// promtool is the real Prometheus rule checker, pinned in hack/tool.sh and built from
// the Go module proxy on first use (PROMTOOL overrides the path).
func promtool(t *testing.T) string {
	t.Helper()
	bin, err := testenv.Tool("promtool")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// renderRules renders the chart's PrometheusRule with the given values into dir/rules.yaml,
// as a rule file Prometheus (and promtool) reads, and returns the alert names in order.
func renderRules(t *testing.T, dir string, values ...string) []string {
	t.Helper()
	args := append([]string{"--set", "prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"}, values...)
	rule := objects(t, helmTemplate(t, args...))
	if len(rule) != 1 || rule[0].GetKind() != "PrometheusRule" {
		t.Fatalf("rendered %d objects, want one PrometheusRule", len(rule))
	}
	spec := rule[0].Object["spec"].(map[string]any)
	out, err := yaml.Marshal(map[string]any{"groups": spec["groups"]})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range spec["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			names = append(names, r.(map[string]any)["alert"].(string))
		}
	}
	return names
}

// promtoolTest copies the unit tests next to the rendered rules and runs them.
func promtoolTest(t *testing.T, dir string) (string, error) {
	t.Helper()
	tests, err := os.ReadFile(filepath.Join(repoRoot, "charts", "testdata", "alerts-test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts-test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	return command(nil, promtool(t), "test", "rules", filepath.Join(dir, "alerts-test.yaml"))
}

// The alerts, each with a runbook section in the README.
var wantAlerts = []string{
	"HeraldEndpointDisabled", "HeraldDeadLettersIncreasing", "HeraldBacklogGrowing", "HeraldIngestErrors",
	"HeraldIngestThrottled", "HeraldDeliveryLatencyHigh", "HeraldDispatcherDown",
}

func TestPrometheusRule_PassesPromtoolCheckAndUnitTests(t *testing.T) {
	dir := t.TempDir()
	names := renderRules(t, dir)
	if !reflect.DeepEqual(names, wantAlerts) {
		t.Errorf("alerts %v, want %v", names, wantAlerts)
	}
	out := mustCommand(t, nil, promtool(t), "check", "rules", filepath.Join(dir, "rules.yaml"))
	if !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", len(wantAlerts))) {
		t.Errorf("promtool check rules:\n%s", out)
	}
	out, err := promtoolTest(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
	// Every alert has a firing case in the unit tests.
	tests := string(mustRead(t, "charts/testdata/alerts-test.yaml"))
	for _, a := range wantAlerts {
		if !strings.Contains(tests, "alertname: "+a+"\n        exp_alerts:\n          - exp_labels") {
			t.Errorf("charts/testdata/alerts-test.yaml shows %s nowhere firing", a)
		}
	}
}

// TestPrometheusRule_ValuesReachTheRules shows the unit tests depend on the values: a
// threshold raised past what the input series reach makes the firing case fail, and an
// alert turned off is not rendered.
func TestPrometheusRule_ValuesReachTheRules(t *testing.T) {
	dir := t.TempDir()
	renderRules(t, dir, "--set", "prometheusRule.alerts.ingestErrors.ratio=0.5", "--set", "prometheusRule.alerts.deliveryLatency.p99Seconds=60")
	out, err := promtoolTest(t, dir)
	if err == nil {
		t.Fatalf("the unit tests passed against raised thresholds:\n%s", out)
	}
	for _, a := range []string{"alertname: HeraldIngestErrors", "alertname: HeraldDeliveryLatencyHigh"} {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("promtool did not report %s:\n%v", a, err)
		}
	}
	if strings.Contains(err.Error(), "alertname: HeraldBacklogGrowing") {
		t.Errorf("an alert whose values did not change failed:\n%v", err)
	}

	names := renderRules(t, t.TempDir(), "--set", "prometheusRule.alerts.dispatcherDown.enabled=false")
	if strings.Contains(strings.Join(names, " "), "HeraldDispatcherDown") {
		t.Errorf("dispatcherDown.enabled=false still renders it: %v", names)
	}
}

func TestPrometheusRule_EveryAlertHasARunbookInTheREADME(t *testing.T) {
	readme := string(mustRead(t, "README.md"))
	for _, a := range wantAlerts {
		if !strings.Contains(readme, "\n#### "+a+"\n") {
			t.Errorf("README.md has no runbook section \"#### %s\" (the alert's runbook_url points there)", a)
		}
	}
}

func TestGrafanaDashboard_ConfigMapForTheSidecarWithValidQueries(t *testing.T) {
	objs := objects(t, helmTemplate(t, "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.annotations.grafana_folder=Herald",
		"--show-only", "templates/grafana-dashboard.yaml"))
	if len(objs) != 1 || objs[0].GetKind() != "ConfigMap" {
		t.Fatalf("rendered %d objects, want one ConfigMap", len(objs))
	}
	cm := objs[0]
	if cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetAnnotations()["grafana_folder"] != "Herald" {
		t.Errorf("labels %v, annotations %v: want the sidecar's grafana_dashboard=1 and the folder annotation", cm.GetLabels(), cm.GetAnnotations())
	}
	data := cm.Object["data"].(map[string]any)["herald.json"].(string)
	if data != strings.TrimRight(string(mustRead(t, "charts/herald/dashboards/herald.json")), "\n") {
		t.Error("the ConfigMap's herald.json differs from charts/herald/dashboards/herald.json")
	}
	exprs := dashboardExprs(t, []byte(data))
	if len(exprs) < 10 {
		t.Fatalf("found %d queries in the dashboard", len(exprs))
	}

	// promtool checks PromQL in rule files only: each query becomes a recording rule,
	// with Grafana's variables replaced by what they expand to.
	grafana := strings.NewReplacer(`"$job"`, `"herald-dispatcher"`, `"$namespace"`, `".*"`, "$__rate_interval", "1m", "$__range", "6h")
	var rules []map[string]string
	for i, e := range exprs {
		expanded := grafana.Replace(e)
		if strings.Contains(expanded, "$") {
			t.Errorf("query %q uses a variable this test does not know", e)
		}
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": expanded})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	mustCommand(t, nil, promtool(t), "check", "rules", path)

	if objs := objects(t, helmTemplate(t)); len(objs) > 0 {
		for _, o := range objs {
			if o.GetKind() == "PrometheusRule" || o.GetName() == "herald-dashboard" {
				t.Errorf("default values render %s %s; alerts and dashboard are opt-in", o.GetKind(), o.GetName())
			}
		}
	}
}

// dashboardExprs returns the PromQL of every panel target and templating query.
func dashboardExprs(t *testing.T, data []byte) []string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var out []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	sort.Strings(out)
	return out
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
