package charts_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/herald-dev/herald/dispatcher/config"
)

// chartSettings are the chart's values that configure the dispatcher, each with the key
// of the dispatcher's configuration (package config) it becomes, through the manager's
// flags and the dispatcher.yaml it renders. A value added to the chart for a setting of
// the dispatcher gets a row here; the tests below then hold its default, its schema and
// its wiring to the configuration's.
var chartSettings = []struct {
	value, setting string
	// sample is a value other than the default, for the wiring check; external marks
	// the settings of external mode.
	sample   string
	external bool
}{
	{"watchNamespaces", "watchNamespaces", `["shop","billing"]`, false},
	{"outbound.allowPlainHTTP", "outbound.allowPlainHTTP", "true", false},
	{"outbound.allowPrivateNetworks", "outbound.allowPrivateNetworks", "true", false},
	{"outbound.proxy.url", "egress.proxy", `"http://proxy.egress.svc:3128"`, false},
	{"outbound.proxy.noProxy", "egress.noProxy", `["internal.example.com","10.0.0.0/8"]`, false},
	{"dispatcher.storage.syncAlways", "store.syncAlways", "true", false},
	{"dispatcher.limits.maxPendingBytes", "store.maxPendingBytes", "8589934592", false},
	{"dispatcher.limits.deadLetterMaxBytes", "store.deadLetterMaxBytes", "1073741824", false},
	{"dispatcher.nats.streamReplicas", "store.replicas", "3", true},
	{"dispatcher.history.retainDeliveredMaxAge", "history.retainDeliveredMaxAge", `"24h"`, false},
	{"dispatcher.history.retainDeliveredMaxBytes", "history.retainDeliveredMaxBytes", "1048576", false},
	{"dispatcher.history.attemptLog", "history.attemptLog", "false", false},
	{"dispatcher.history.attemptLogMaxAge", "history.attemptLogMaxAge", `"36h"`, false},
	{"dispatcher.history.attemptLogMaxBytes", "history.attemptLogMaxBytes", "2097152", false},
	{"dispatcher.history.replayRate", "history.replayRate", "2.5", false},
	{"dispatcher.maxBodyBytes", "ingest.maxBodyBytes", "2048", false},
	{"dispatcher.auth.acceptAPIServerAudience", "auth.acceptAPIServerAudience", "true", false},
	{"dispatcher.tracing.otlpEndpoint", "tracing.otlpEndpoint", `"http://otel-collector.observability:4318"`, false},
	{"dispatcher.logVerbosity", "log.verbosity", "2", false},
}

// The defaults in values.yaml are the dispatcher's: the chart shows them to those who
// read its values (helm show values), and config.Default is where they are decided.
func TestChartValues_DefaultsAreTheDispatchers(t *testing.T) {
	values := readYAML(t, filepath.Join(chartDir, "values.yaml"))
	defaults := configTree(t, config.Default())
	for _, s := range chartSettings {
		chart, ok := lookup(values, s.value)
		if !ok {
			t.Errorf("values.yaml has no %s", s.value)
			continue
		}
		def, _ := lookup(defaults, s.setting)
		if !sameSetting(chart, def) {
			t.Errorf("values.yaml %s = %v, but the dispatcher's default %s is %v (dispatcher/config/defaults.go)", s.value, chart, s.setting, def)
		}
	}
}

// The schema admits what the dispatcher's validation admits: the type of each value is
// its setting's, its bounds are values config.Validate accepts, a setting it refuses
// negative is bounded at 0 or above, and the default passes the schema's pattern.
func TestChartSchema_AgreesWithTheDispatchersValidation(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	defaults := configTree(t, config.Default())
	for _, s := range chartSettings {
		t.Run(s.value, func(t *testing.T) {
			prop := schemaOf(t, schema, s.value)
			field := fieldOf(t, s.setting)
			want := map[reflect.Kind]string{reflect.String: "string", reflect.Bool: "boolean", reflect.Int: "integer",
				reflect.Int64: "integer", reflect.Float64: "number", reflect.Slice: "array"}[field.Type.Kind()]
			if field.Type == reflect.TypeFor[time.Duration]() {
				want = "string"
			}
			if prop["type"] != want {
				t.Errorf("the schema types %s as %v; its setting %s is %s (a %s)", s.value, prop["type"], s.setting, want, field.Type)
			}
			for _, bound := range []string{"minimum", "maximum"} {
				if b, ok := prop[bound].(float64); ok {
					c := config.Default()
					setField(t, &c, s.setting, b)
					if err := c.Validate(); err != nil {
						t.Errorf("the schema's %s of %s (%v) is refused by the dispatcher: %v", bound, s.value, b, err)
					}
				}
			}
			isDuration := field.Type == reflect.TypeFor[time.Duration]()
			if k := field.Type.Kind(); k == reflect.Int || k == reflect.Int64 || k == reflect.Float64 {
				c := config.Default()
				setField(t, &c, s.setting, -1)
				refused := c.Validate() != nil
				p, _ := prop["pattern"].(string)
				min, bounded := prop["minimum"].(float64)
				switch {
				case refused && isDuration && (p == "" || regexp.MustCompile(p).MatchString("-1h")):
					t.Errorf("the dispatcher refuses a negative %s, the schema of %s does not (pattern %q)", s.setting, s.value, p)
				case refused && !isDuration && (!bounded || min < 0):
					t.Errorf("the dispatcher refuses a negative %s, the schema of %s does not (minimum %v)", s.setting, s.value, prop["minimum"])
				}
			}
			if p, ok := prop["pattern"].(string); ok {
				def, _ := lookup(defaults, s.setting)
				if str, _ := def.(string); !regexp.MustCompile(p).MatchString(str) {
					t.Errorf("the default %q of %s does not match the schema's pattern %s", str, s.value, p)
				}
			}
		})
	}
}

// Each value reaches the dispatcher: set to something else than its default, it is what
// the manager renders for the dispatcher under its setting; left at the defaults, the
// rendered configuration is the dispatcher's default configuration but for what the
// manager decides from the pod it builds.
func TestChartValues_ReachTheDispatchersConfiguration(t *testing.T) {
	var embedded, external []string
	for _, s := range chartSettings {
		set := []string{"--set-json", s.value + "=" + s.sample}
		if s.external {
			external = append(external, set...)
		} else {
			embedded = append(embedded, set...)
		}
	}
	external = append(external, "--set", "dispatcher.mode=external", "--set", "dispatcher.replicas=3", "--set", "dispatcher.nats.url=nats://nats.nats:4222")
	for name, args := range map[string][]string{"embedded": embedded, "external": external} {
		t.Run(name, func(t *testing.T) {
			cfg := managerConfig(t, find(t, objects(t, helmTemplate(t, args...)), "Deployment", "herald-manager"))
			got := configTree(t, cfg.Rendered())
			for _, s := range chartSettings {
				if s.external != (name == "external") {
					continue
				}
				var want any
				if err := json.Unmarshal([]byte(s.sample), &want); err != nil {
					t.Fatal(err)
				}
				if v, _ := lookup(got, s.setting); !sameSetting(want, v) {
					t.Errorf("--set %s=%s: the dispatcher's %s is %v", s.value, s.sample, s.setting, v)
				}
			}
		})
	}

	cfg := managerConfig(t, find(t, objects(t, helmTemplate(t)), "Deployment", "herald-manager"))
	got, want := cfg.Rendered(), config.Default()
	if !reflect.DeepEqual(got, want) {
		g, _ := config.Render(got)
		w, _ := config.Render(want)
		t.Errorf("with the chart's default values the manager renders\n%s\nnot the dispatcher's defaults\n%s", g, w)
	}
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return yamlTree(t, raw)
}

// configTree is c as the file holds it, a tree of maps.
func configTree(t *testing.T, c config.Dispatcher) map[string]any {
	t.Helper()
	raw, err := config.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	return yamlTree(t, raw)
}

func yamlTree(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var out map[string]any
	if err := yaml.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func lookup(tree map[string]any, path string) (any, bool) {
	var v any = tree
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// sameSetting compares a chart value with a setting as written in the file: durations
// by what they last ("168h" is "7d" written in hours), lists by their items, a missing
// list as an empty one, numbers by value.
func sameSetting(a, b any) bool {
	if as, ok := a.(string); ok {
		if bs, ok := b.(string); ok {
			ad, errA := time.ParseDuration(as)
			bd, errB := time.ParseDuration(bs)
			if errA == nil && errB == nil {
				return ad == bd
			}
			return as == bs
		}
	}
	// The file leaves out a setting at its zero value (omitempty).
	empty := func(v any) bool {
		l, ok := v.([]any)
		return v == nil || v == "" || v == false || v == float64(0) || (ok && len(l) == 0)
	}
	if empty(a) && empty(b) {
		return true
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func schemaOf(t *testing.T, schema map[string]any, path string) map[string]any {
	t.Helper()
	node := schema
	for _, k := range strings.Split(path, ".") {
		props, _ := node["properties"].(map[string]any)
		next, ok := props[k].(map[string]any)
		if !ok {
			t.Fatalf("values.schema.json has no property %s", path)
		}
		node = next
	}
	return node
}

// fieldOf is the field of config.Dispatcher at the file's key path.
func fieldOf(t *testing.T, path string) reflect.StructField {
	t.Helper()
	typ := reflect.TypeFor[config.Dispatcher]()
	var f reflect.StructField
	for _, k := range strings.Split(path, ".") {
		found := false
		for i := range typ.NumField() {
			if name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ","); name == k {
				f, typ, found = typ.Field(i), typ.Field(i).Type, true
				break
			}
		}
		if !found {
			t.Fatalf("config.Dispatcher has no setting %s", path)
		}
	}
	return f
}

// setField sets the numeric setting at path of c to n.
func setField(t *testing.T, c *config.Dispatcher, path string, n float64) {
	t.Helper()
	v := reflect.ValueOf(c).Elem()
	for _, k := range strings.Split(path, ".") {
		for i := range v.NumField() {
			if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ","); name == k {
				v = v.Field(i)
				break
			}
		}
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(n))
	case reflect.Float64:
		v.SetFloat(n)
	default:
		t.Fatalf("%s is not a number", path)
	}
}

// Every setting of the dispatcher the chart passes to the manager (a --dispatcher-<flag>
// of config.BindManagerFlags in templates/deployment.yaml) has its row in chartSettings,
// so that the tests above hold its value's default, schema and wiring: a value added to
// the chart without its row fails here.
func TestChartSettings_CoverEveryDispatcherFlagTheChartPasses(t *testing.T) {
	tpl, err := os.ReadFile(filepath.Join(chartDir, "templates", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, s := range chartSettings {
		rows[s.setting] = true
	}
	def := flatten(configTree(t, config.Default()), "")
	checked := 0
	for _, m := range regexp.MustCompile(`--([a-z0-9-]+)=`).FindAllSubmatch(tpl, -1) {
		name := string(m[1])
		c := config.Default()
		fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
		config.BindManagerFlags(fs, &c)
		f := fs.Lookup(name)
		if f == nil {
			continue // the manager's own, or the workload's
		}
		sample := map[string]string{"bool": fmt.Sprint(f.DefValue != "true"), "int": "3", "int64": "7", "float64": "7.5",
			"duration": "7s", "string": "sample", "stringSlice": "sample"}[f.Value.Type()]
		if err := fs.Set(name, sample); err != nil {
			t.Fatalf("--%s=%s: %v", name, sample, err)
		}
		var keys []string
		for k, v := range flatten(configTree(t, c), "") {
			if def[k] != v {
				keys = append(keys, k)
			}
		}
		if len(keys) != 1 {
			t.Fatalf("--%s sets %v, want one setting", name, keys)
		}
		checked++
		if !rows[keys[0]] {
			t.Errorf("the chart passes --%s (the dispatcher's %s), which has no row in chartSettings", name, keys[0])
		}
	}
	t.Logf("%d dispatcher settings passed by the chart", checked)
	if checked == 0 {
		t.Fatal("templates/deployment.yaml passes no dispatcher setting: has the template moved?")
	}
}

// flatten is tree as key paths to the values' text.
func flatten(tree map[string]any, path string) map[string]string {
	out := map[string]string{}
	for k, v := range tree {
		if path != "" {
			k = path + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			for kk, vv := range flatten(sub, k) {
				out[kk] = vv
			}
			continue
		}
		out[k] = fmt.Sprint(v)
	}
	return out
}
