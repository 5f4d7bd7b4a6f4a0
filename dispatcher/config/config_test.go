package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/herald-dev/herald/dispatcher/config"
)

// The defaults as a file: a change of a default shows in review as a change of this
// file (UPDATE_DEFAULTS=true go test ./dispatcher/config rewrites it).
func TestDefaults_Golden(t *testing.T) {
	got, err := config.Render(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/defaults.yaml"
	if os.Getenv("UPDATE_DEFAULTS") == "true" {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("Render(Default()) differs from %s (UPDATE_DEFAULTS=true go test ./dispatcher/config, then read the diff):\n%s", golden, got)
	}
}

func TestDefaults_AreValidAndSetDefaultsKeepsThem(t *testing.T) {
	d := config.Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	again := d
	again.SetDefaults()
	if !reflect.DeepEqual(again, d) {
		t.Errorf("SetDefaults changed the defaults:\n%+v\n%+v", again, d)
	}
	// A package's Go caller that leaves a section zero gets the same defaults as the
	// dispatcher does.
	var s config.Store
	s.SetDefaults()
	d.Store.DataDir = ""
	if !reflect.DeepEqual(s, d.Store) {
		t.Errorf("Store{}.SetDefaults() = %+v, want the defaults' %+v", s, d.Store)
	}
}

// The flags, bound to a fresh default configuration, with the command line given.
func flags(t *testing.T, args ...string) (*pflag.FlagSet, *config.Dispatcher) {
	t.Helper()
	c := config.Default()
	fs := pflag.NewFlagSet("dispatcher", pflag.ContinueOnError)
	config.BindFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs, &c
}

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dispatcher.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad_FileOverDefaultsCommandLineOverFile(t *testing.T) {
	file := write(t, `apiVersion: config.herald.dev/v1alpha1
kind: DispatcherConfiguration
watchNamespaces: [a, b]
store:
  dataDir: /from/file
  dedupeWindow: 2h
history:
  replayRate: 0
ingest:
  maxBodyBytes: 1048576
outbound:
  allowPlainHTTP: true
auth:
  tokenAudiences: [one, two]
`)
	fs, c := flags(t, "--data-dir=/from/flag", "--token-audiences=flag")
	if err := config.Load(file, fs, c); err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.WatchNamespaces = []string{"a", "b"}
	want.Store.DataDir = "/from/flag"
	want.Store.DedupeWindow = 2 * time.Hour
	want.History.ReplayRate = 0
	want.Ingest.MaxBodyBytes = 1 << 20
	want.Outbound.AllowPlainHTTP = true
	want.Auth.TokenAudiences = []string{"flag"}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", *c, want)
	}
}

// The flat form of flag names is what managers before this package rendered: a
// dispatcher of this release must start on the ConfigMap an older manager left.
func TestLoad_FlatFileOfFlagNames(t *testing.T) {
	file := write(t, "max-body-bytes: \"1048576\"\nallow-plain-http: \"true\"\nwatch-namespaces: a,b\ndata-dir: /from/file\nretain-delivered-max-age: 2h0m0s\nreplay-rate: \"0\"\nattempt-log: \"false\"\nv: \"1\"\n")
	fs, c := flags(t, "--data-dir=/from/flag")
	if err := config.Load(file, fs, c); err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Ingest.MaxBodyBytes = 1 << 20
	want.Outbound.AllowPlainHTTP = true
	want.WatchNamespaces = []string{"a", "b"}
	want.Store.DataDir = "/from/flag"
	want.History.RetainDeliveredMaxAge = 2 * time.Hour
	want.History.ReplayRate = 0
	want.History.AttemptLog = false
	want.Log.Verbosity = 1
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("loaded\n%+v\nwant\n%+v", *c, want)
	}
}

func TestLoad_RefusesWhatItDoesNotKnow(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"a typo in a key", "apiVersion: config.herald.dev/v1alpha1\nkind: DispatcherConfiguration\nstore:\n  dedupWindow: 1h\n", `unknown setting "store.dedupWindow"`},
		{"a duration without unit", "apiVersion: config.herald.dev/v1alpha1\nkind: DispatcherConfiguration\ndelivery:\n  ackWait: 120\n", "delivery.ackWait: 120 is not a duration"},
		{"another kind", "apiVersion: config.herald.dev/v1alpha1\nkind: ManagerConfiguration\n", `kind "ManagerConfiguration" is not`},
		{"another version", "apiVersion: config.herald.dev/v2\nkind: DispatcherConfiguration\n", `apiVersion "config.herald.dev/v2"`},
		{"a number for a string", "apiVersion: config.herald.dev/v1alpha1\nkind: DispatcherConfiguration\nstore:\n  url: 4222\n", "store.url: 4222"},
		{"an unknown flag in the flat form", "no-such-flag: \"1\"\n", `unknown setting "no-such-flag"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, c := flags(t)
			err := config.Load(write(t, tc.file), fs, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// What Render writes, Load reads back unchanged, every section filled.
func TestRender_LoadsBackUnchanged(t *testing.T) {
	c := config.Default()
	c.WatchNamespaces = []string{"shop"}
	c.Serving.TLS = config.TLSFiles{CertFile: "/tls/tls.crt", KeyFile: "/tls/tls.key"}
	c.Serving.PprofBindAddress = "127.0.0.1:6060"
	c.Store.URL, c.Store.DataDir, c.Store.CredentialsFile, c.Store.Replicas = "nats://nats:4222", "", "/creds/nats.creds", 3
	c.History.ReplayRate, c.History.AttemptLog, c.History.AttemptLogMaxAge = 12.5, false, 90*time.Minute
	c.Outbound.AllowPrivateNetworks = true
	c.Auth.AcceptAPIServerAudience = true
	c.Tracing.OTLPEndpoint = "http://collector:4318"
	c.Log.Verbosity, c.Log.Development = 2, true
	out, err := config.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	// Read as the dispatcher reads it: over its defaults.
	fs, got := flags(t)
	if err := config.Load(write(t, string(out)), fs, got); err != nil {
		t.Fatalf("loading what Render wrote: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(*got, c) {
		t.Errorf("round trip changed the configuration:\n%s\ngot  %+v\nwant %+v", out, *got, c)
	}
}

// A setting at its zero value is written too when its default is not zero: the
// dispatcher reads the file over its defaults, so a setting the file leaves out would
// come back as the default (an external store's empty dataDir as /var/lib/herald).
func TestRender_ZeroSettingsSurviveTheDefaults(t *testing.T) {
	zero := config.Dispatcher{APIVersion: config.APIVersion, Kind: config.Kind}
	out, err := config.Render(zero)
	if err != nil {
		t.Fatal(err)
	}
	fs, got := flags(t)
	if err := config.Load(write(t, string(out)), fs, got); err != nil {
		t.Fatalf("loading what Render wrote: %v\n%s", err, out)
	}
	// Compared as files: an empty list reads back as empty, not nil.
	again, err := config.Render(*got)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(out) {
		t.Errorf("the zero configuration, read over the defaults, became\n%s\nnot\n%s", again, out)
	}
}

func TestValidate_NamesTheKeyToFix(t *testing.T) {
	for _, tc := range []struct {
		why    string
		change func(c *config.Dispatcher)
		want   string
	}{
		{"a namespace name the API server would refuse", func(c *config.Dispatcher) { c.WatchNamespaces = []string{"Shop"} }, `watchNamespaces: "Shop"`},
		{"a certificate needs its key", func(c *config.Dispatcher) { c.Serving.TLS.CertFile = "/tls.crt" }, "serving.tls: certFile and keyFile go together"},
		{"the embedded store needs a directory", func(c *config.Dispatcher) { c.Store.DataDir = "" }, "store.dataDir: is required"},
		{"fsync every write is the embedded store's", func(c *config.Dispatcher) { c.Store.URL, c.Store.SyncAlways = "nats://nats:4222", true }, "store.syncAlways: applies to the embedded store"},
		{"NATS keeps at most 5 copies", func(c *config.Dispatcher) { c.Store.Replicas = 6 }, "store.replicas: must be between 1 and 5"},
		{"a negative retention would keep nothing, silently", func(c *config.Dispatcher) { c.History.RetainDeliveredMaxAge = -time.Hour }, "history.retainDeliveredMaxAge: must be 0 or more, not -1h0m0s"},
		{"a negative replay rate means nothing", func(c *config.Dispatcher) { c.History.ReplayRate = -1 }, "history.replayRate: must be 0 (no bound) or more"},
		{"a negative byte cap means nothing", func(c *config.Dispatcher) { c.Store.MaxPendingBytes = -1 }, "store.maxPendingBytes: must be 0 or more"},
		{"the collector is an http(s) URL", func(c *config.Dispatcher) { c.Tracing.OTLPEndpoint = "otel-collector:4318" }, `tracing.otlpEndpoint: "otel-collector:4318" must be an http(s) URL`},
		{"a file of another kind", func(c *config.Dispatcher) { c.Kind = "Other" }, "apiVersion, kind: must be"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			c := config.Default()
			tc.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// The manager takes every dispatcher flag it does not decide itself as
// --dispatcher-<flag>, bound to the configuration it renders, and keeps the names it
// had before.
func TestBindManagerFlags_EveryDispatcherFlagButTheManagersOwn(t *testing.T) {
	c := config.Default()
	mfs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	config.BindManagerFlags(mfs, &c)
	dfs, _ := flags(t)
	decided := strings.Join(config.ManagerDecides, " ")
	dfs.VisitAll(func(f *pflag.Flag) {
		m := mfs.Lookup(config.ManagerFlag(f.Name))
		switch {
		case strings.Contains(" "+decided+" ", " "+f.Name+" "):
			if m != nil {
				t.Errorf("--%s is the manager's to decide, yet it takes --%s", f.Name, m.Name)
			}
		case m == nil:
			t.Errorf("the manager takes no flag for the dispatcher's --%s", f.Name)
		case m.DefValue != f.DefValue:
			t.Errorf("--%s defaults to %q, the dispatcher's --%s to %q", m.Name, m.DefValue, f.Name, f.DefValue)
		}
	})
	if err := mfs.Parse([]string{"--dispatcher-retain-delivered-max-age=2h", "--nats-stream-replicas=3",
		"--dispatcher-sync-always", "--dispatcher-log-verbosity=2", "--dispatcher-without-attempt-log", "--dispatcher-ingest-max-concurrent=64"}); err != nil {
		t.Fatal(err)
	}
	if c.History.RetainDeliveredMaxAge != 2*time.Hour || c.Store.Replicas != 3 || !c.Store.SyncAlways || c.Log.Verbosity != 2 ||
		c.History.AttemptLog || c.Ingest.MaxConcurrent != 64 {
		t.Errorf("the manager's flags did not reach the configuration: %+v", c)
	}
}

// Every number of the configuration is a count, a size, a rate or a duration: a
// negative one means nothing, and the one judge refuses it naming its key, so a setting
// added without its check fails here.
func TestValidate_RefusesEveryNegativeNumber(t *testing.T) {
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		t.Helper()
		typ := v.Type()
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			key := name
			if path != "" {
				key = path + "." + name
			}
			switch f.Type.Kind() {
			case reflect.Struct:
				walk(v.Field(i), key)
				continue
			case reflect.Int, reflect.Int64, reflect.Float64:
			default:
				continue
			}
			t.Run(key, func(t *testing.T) {
				c := config.Default()
				field := reflect.ValueOf(&c).Elem().FieldByIndex(fieldIndex(t, reflect.TypeFor[config.Dispatcher](), key))
				if field.Kind() == reflect.Float64 {
					field.SetFloat(-1)
				} else {
					field.SetInt(-1)
				}
				err := c.Validate()
				if err == nil || !strings.Contains(err.Error(), key+": ") {
					t.Errorf("%s = -1: Validate() = %v, want it refused naming %s", key, err, key)
				}
			})
		}
	}
	walk(reflect.ValueOf(config.Default()), "")
}

// fieldIndex is the index path of the field at the file's key path.
func fieldIndex(t *testing.T, typ reflect.Type, key string) []int {
	t.Helper()
	var index []int
	for part := range strings.SplitSeq(key, ".") {
		found := false
		for i := range typ.NumField() {
			if name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ","); name == part {
				index, typ, found = append(index, i), typ.Field(i).Type, true
				break
			}
		}
		if !found {
			t.Fatalf("no setting %s", key)
		}
	}
	return index
}

// Every setting of the configuration has its flag of `herald dispatcher` (and so the
// manager's --dispatcher-<flag>, or the manager decides it): each flag, set alone to
// something other than its default, changes a setting, and every setting is changed by
// one. A field added without its flag fails here.
func TestBindFlags_EverySettingHasItsFlag(t *testing.T) {
	var keys []string
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			if path != "" {
				name = path + "." + name
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, name)
			} else if name != "apiVersion" && name != "kind" {
				keys = append(keys, name)
			}
		}
	}
	walk(reflect.TypeFor[config.Dispatcher](), "")

	typ, def := reflect.TypeFor[config.Dispatcher](), config.Default()
	setBy := map[string]string{}
	all, _ := flags(t)
	all.VisitAll(func(f *pflag.Flag) {
		c := config.Default()
		fs := pflag.NewFlagSet("dispatcher", pflag.ContinueOnError)
		config.BindFlags(fs, &c)
		sample := map[string]string{"bool": fmt.Sprint(f.DefValue != "true"), "int": "7", "int64": "7", "float64": "7.5",
			"duration": "7s", "string": "sample", "stringSlice": "sample"}[f.Value.Type()]
		if sample == "" {
			t.Fatalf("--%s: no sample value for a flag of type %s", f.Name, f.Value.Type())
		}
		if err := fs.Set(f.Name, sample); err != nil {
			t.Fatalf("--%s=%s: %v", f.Name, sample, err)
		}
		changed := 0
		for _, k := range keys {
			idx := fieldIndex(t, typ, k)
			if !reflect.DeepEqual(reflect.ValueOf(c).FieldByIndex(idx).Interface(), reflect.ValueOf(def).FieldByIndex(idx).Interface()) {
				setBy[k] = f.Name
				changed++
			}
		}
		if changed == 0 {
			t.Errorf("--%s=%s changes no setting", f.Name, sample)
		}
	})
	for _, k := range keys {
		if _, ok := setBy[k]; !ok {
			t.Errorf("the setting %s has no flag (add it to BindFlags)", k)
		}
	}
}
