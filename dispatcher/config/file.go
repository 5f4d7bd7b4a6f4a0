package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// Render writes c as the --config file: YAML in the order of the fields, durations as
// Go writes them ("72h"), every setting present. The bytes are stable for equal
// configurations, so their checksum says whether the configuration changed.
func Render(c Dispatcher) ([]byte, error) {
	tree, err := encode(reflect.ValueOf(c))
	if err != nil {
		return nil, err
	}
	return yamlv2.Marshal(tree)
}

// Load reads the --config file at path into c, over what c holds: a key present in the
// file replaces the value, a key absent keeps it. The flags on fs given on the command
// line win over the file. Two forms are read:
//
//   - apiVersion config.herald.dev/v1alpha1, kind DispatcherConfiguration: this type,
//     as Render writes it (and the manager renders it);
//   - a flat map of flag names to values, without apiVersion: the form managers before
//     this type rendered, kept so that a dispatcher of this release starts on the
//     ConfigMap an older manager left.
//
// An unknown key is an error: a typo must not leave a setting at its default unseen.
func Load(path string, fs *pflag.FlagSet, c *Dispatcher) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading --config: %w", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("parsing --config %s: %w", path, err)
	}
	var head struct {
		APIVersion *string `json:"apiVersion"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return fmt.Errorf("parsing --config %s: it is not a map of settings: %w", path, err)
	}
	if head.APIVersion == nil {
		return loadFlat(path, js, fs)
	}
	given := commandLine(fs)
	if err := decode(js, reflect.ValueOf(c).Elem(), ""); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	if c.APIVersion != APIVersion || c.Kind != Kind {
		return fmt.Errorf("--config %s: apiVersion %q, kind %q is not %s, %s", path, c.APIVersion, c.Kind, APIVersion, Kind)
	}
	return given.restore()
}

// given are the flags set on the command line, with their values.
type given []struct {
	f      *pflag.Flag
	value  string
	values []string // for list flags
}

func commandLine(fs *pflag.FlagSet) given {
	var g given
	fs.Visit(func(f *pflag.Flag) {
		e := struct {
			f      *pflag.Flag
			value  string
			values []string
		}{f: f, value: f.Value.String()}
		if s, ok := f.Value.(pflag.SliceValue); ok {
			e.values = slices.Clone(s.GetSlice()) // decoding reuses the slice's array
		}
		g = append(g, e)
	})
	return g
}

// restore sets the flags again, after a file wrote over their fields.
func (g given) restore() error {
	for _, e := range g {
		var err error
		if s, ok := e.f.Value.(pflag.SliceValue); ok {
			err = s.Replace(e.values)
		} else {
			err = e.f.Value.Set(e.value)
		}
		if err != nil {
			return fmt.Errorf("--%s: %w", e.f.Name, err)
		}
	}
	return nil
}

// loadFlat applies a flat file of flag names through the flags, skipping those given on
// the command line.
func loadFlat(path string, js []byte, fs *pflag.FlagSet) error {
	// Numbers are kept as written (json.Number): through float64, 1048576 would come
	// back as 1.048576e+06 and an integer flag would refuse it.
	var values map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&values); err != nil {
		return fmt.Errorf("parsing --config %s: %w", path, err)
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("--config %s: unknown setting %q", path, name)
		}
		if f.Changed {
			continue
		}
		var s string
		switch v := values[name].(type) {
		case []any:
			parts := make([]string, len(v))
			for i := range v {
				parts[i] = fmt.Sprint(v[i])
			}
			s = strings.Join(parts, ",")
		case nil:
			continue
		default:
			s = fmt.Sprint(v)
		}
		if err := fs.Set(name, s); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, name, err)
		}
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// encode turns v into what yaml.v2 writes in order: structs become MapSlices keyed by
// their JSON names, durations their text.
func encode(v reflect.Value) (any, error) {
	switch {
	case v.Type() == durationType:
		return formatDuration(time.Duration(v.Int())), nil
	case v.Kind() == reflect.Struct:
		var out yamlv2.MapSlice
		t := v.Type()
		for i := range t.NumField() {
			name, opts, ok := jsonName(t.Field(i))
			if !ok {
				continue
			}
			fv := v.Field(i)
			if fv.IsZero() && (opts.omitEmpty || opts.omitZero) {
				continue
			}
			item, err := encode(fv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out = append(out, yamlv2.MapItem{Key: name, Value: item})
		}
		return out, nil
	case v.Kind() == reflect.Slice && v.IsNil():
		return []any{}, nil
	}
	return v.Interface(), nil
}

// formatDuration writes d as a person would: 72h, 1m30s, 500ms.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// decode reads the JSON value js into v: objects into structs by their JSON names,
// refusing unknown keys; durations from their text; the rest as encoding/json does.
// null keeps what v holds.
func decode(js []byte, v reflect.Value, path string) error {
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil
	}
	switch {
	case v.Type() == durationType:
		var s string
		if err := json.Unmarshal(js, &s); err != nil {
			return fmt.Errorf("%s: %s is not a duration such as 72h or 30s", path, js)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration such as 72h or 30s", path, s)
		}
		v.SetInt(int64(d))
		return nil
	case v.Kind() == reflect.Struct:
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(js, &fields); err != nil {
			return fmt.Errorf("%s: %s is not a map of settings", path, js)
		}
		t := v.Type()
		index := map[string]int{}
		for i := range t.NumField() {
			if name, _, ok := jsonName(t.Field(i)); ok {
				index[name] = i
			}
		}
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			key := k
			if path != "" {
				key = path + "." + k
			}
			i, ok := index[k]
			if !ok {
				return fmt.Errorf("unknown setting %q", key)
			}
			if err := decode(fields[k], v.Field(i), key); err != nil {
				return err
			}
		}
		return nil
	}
	if err := json.Unmarshal(js, v.Addr().Interface()); err != nil {
		return fmt.Errorf("%s: %s: %w", path, js, err)
	}
	return nil
}

type jsonOpts struct{ omitEmpty, omitZero bool }

// jsonName is the field's key, as encoding/json names it; ok is false for fields left
// out (json:"-", unexported).
func jsonName(f reflect.StructField) (string, jsonOpts, bool) {
	if !f.IsExported() {
		return "", jsonOpts{}, false
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", jsonOpts{}, false
	}
	name, rest, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	var o jsonOpts
	for opt := range strings.SplitSeq(rest, ",") {
		o.omitEmpty = o.omitEmpty || opt == "omitempty"
		o.omitZero = o.omitZero || opt == "omitzero"
	}
	return name, o, true
}
