package testenv

import (
	"fmt"
	"reflect"
	"sort"
)

// Drift compares what a manifest sets (desired) with the object the API server stored
// (live) the way Argo CD does after a server-side apply: every field the manifest sets
// must be in the live object with the same value, and lists must have as many entries
// as the manifest gives. A field the API server adds by default inside an object whose
// fields are all scalars (a resourceFieldRef, a port, an httpGet) counts too: Argo CD
// with ServerSideApply shows the Application OutOfSync for it (as it did for
// GOMEMLIMIT's resourceFieldRef without divisor), so manifests spell such defaults out.
// Fields added next to nested objects (a container's terminationMessagePath) are fine.
// It returns one line per difference, naming the field's path.
func Drift(desired, live any) []string {
	var out []string
	drift("", desired, live, &out)
	sort.Strings(out)
	return out
}

func drift(path string, desired, live any, out *[]string) {
	switch d := desired.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: manifest has an object, live has %s", orRoot(path), describe(live)))
			return
		}
		if leaf(d) {
			for k, lv := range l {
				if _, set := d[k]; !set {
					*out = append(*out, fmt.Sprintf("%s.%s: added by the API server (%v); spell it out in the manifest", path, k, describe(lv)))
				}
			}
		}
		for k, dv := range d {
			lv, found := l[k]
			if !found {
				if dv != nil {
					*out = append(*out, fmt.Sprintf("%s.%s: set in the manifest (%s), absent from the live object", path, k, describe(dv)))
				}
				continue
			}
			drift(path+"."+k, dv, lv, out)
		}
	case []any:
		l, ok := live.([]any)
		if !ok || len(l) != len(d) {
			*out = append(*out, fmt.Sprintf("%s: manifest has %s, live has %s", orRoot(path), describe(desired), describe(live)))
			return
		}
		for i := range d {
			drift(fmt.Sprintf("%s[%d]", path, i), d[i], l[i], out)
		}
	default:
		if !sameScalar(desired, live) {
			*out = append(*out, fmt.Sprintf("%s: manifest has %v, live has %v", orRoot(path), desired, live))
		}
	}
}

// leaf reports whether every field of m is a scalar.
func leaf(m map[string]any) bool {
	for _, v := range m {
		switch v.(type) {
		case map[string]any, []any:
			return false
		}
	}
	return true
}

// sameScalar compares JSON scalars, treating 3 and 3.0 alike (YAML and the API server
// may decode a number differently).
func sameScalar(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case map[string]any:
		return fmt.Sprintf("an object of %d fields", len(x))
	case []any:
		return fmt.Sprintf("a list of %d", len(x))
	}
	return fmt.Sprintf("%v", v)
}

func orRoot(path string) string {
	if path == "" {
		return "."
	}
	return path
}
