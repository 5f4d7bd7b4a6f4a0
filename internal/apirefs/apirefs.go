// Package apirefs finds, by reflection over the WebhookEndpoint Go types, every field
// that names a Secret: a SecretKeySelector or LocalObjectReference (pointer or not, in
// nested structs and lists). Tests hold the lists of references written by hand to it —
// api/v1alpha1's SecretReferences, which the manager and the dispatcher read by, and
// the admission policy's CEL, which lets an author use only Secrets they may read — so
// that a reference field added to the types without being covered fails a test.
package apirefs

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

var (
	secretKeySelector = reflect.TypeFor[heraldv1.SecretKeySelector]()
	localObjectRef    = reflect.TypeFor[heraldv1.LocalObjectReference]()
)

// NotSecrets are reference fields of the endpoint that name something other than a
// Secret, with why; none today. A LocalObjectReference to a ConfigMap, say, goes here.
var NotSecrets = map[string]string{}

// Paths returns the path of every Secret reference of a WebhookEndpoint, sorted, lists
// written with "[]": "spec.headers[].valueFrom".
func Paths() []string {
	var out []string
	walk(reflect.TypeFor[heraldv1.WebhookEndpointSpec](), "spec", 0, func(path string) {
		if _, skip := NotSecrets[path]; !skip {
			out = append(out, path)
		}
	})
	sort.Strings(out)
	return out
}

func walk(t reflect.Type, path string, depth int, found func(string)) {
	if depth > 10 {
		panic("apirefs: the API types nest more than 10 deep at " + path)
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		ft, list := f.Type, ""
		if ft.Kind() == reflect.Slice {
			ft, list = ft.Elem(), "[]"
		}
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		p := path + "." + name + list
		switch {
		case ft == secretKeySelector || ft == localObjectRef:
			found(p)
		case ft.Kind() == reflect.Struct:
			walk(ft, p, depth+1, found)
		}
	}
}

// Set makes the reference at path name the Secret name, allocating what leads to it. In
// a list it sets the reference of every element, appending one to an empty list. Other
// fields are left as they are: the caller fills in what the schema requires.
func Set(ep *heraldv1.WebhookEndpoint, path, name string) error {
	rest, ok := strings.CutPrefix(path, "spec.")
	if !ok {
		return fmt.Errorf("apirefs: path %q is not under spec", path)
	}
	return set(reflect.ValueOf(&ep.Spec).Elem(), strings.Split(rest, "."), name, path)
}

func set(v reflect.Value, parts []string, name, path string) error {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if len(parts) == 0 {
		if t := v.Type(); t != secretKeySelector && t != localObjectRef {
			return fmt.Errorf("apirefs: %s is a %s, not a reference", path, t)
		}
		v.FieldByName("Name").SetString(name)
		return nil
	}
	field, isList := strings.CutSuffix(parts[0], "[]")
	f, ok := fieldByJSON(v, field)
	if !ok {
		return fmt.Errorf("apirefs: no field %q on the way to %s", field, path)
	}
	if !isList {
		return set(f, parts[1:], name, path)
	}
	if f.Len() == 0 {
		f.Set(reflect.Append(f, reflect.Zero(f.Type().Elem())))
	}
	for i := range f.Len() {
		if err := set(f.Index(i), parts[1:], name, path); err != nil {
			return err
		}
	}
	return nil
}

func fieldByJSON(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); n == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

var listKey = regexp.MustCompile(`\[[^\]]*\]`)

// Normalize turns a field as heraldv1.SecretReference and the admission policy write it
// ("spec.headers[Authorization].valueFrom") into its path ("spec.headers[].valueFrom").
func Normalize(field string) string {
	return listKey.ReplaceAllString(field, "[]")
}
