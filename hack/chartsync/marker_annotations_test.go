package main

import (
	"strings"
	"testing"
)

// The Go markers put the Argo CD sync wave on config/crd/bases already; chartsync adds
// only what is missing, because a second copy of the key is a duplicate YAML key that
// some parsers refuse and others resolve silently.
func TestCRDTemplate_AddsOnlyAnnotationsTheMarkersDidNotSet(t *testing.T) {
	src := strings.Replace(trickyCRD, "  annotations:\n",
		"  annotations:\n    argocd.argoproj.io/sync-wave: \"-1\"\n", 1)
	out, err := crdTemplate("widgets.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	if n := strings.Count(text, "argocd.argoproj.io/sync-wave:"); n != 1 {
		t.Errorf("sync-wave appears %d times, want once:\n%s", n, text)
	}
	if n := strings.Count(text, "helm.sh/resource-policy: keep"); n != 1 {
		t.Errorf("helm.sh/resource-policy appears %d times, want once:\n%s", n, text)
	}
	if n := strings.Count(text, "  annotations:\n"); n != 1 {
		t.Errorf("%d annotations blocks, want one:\n%s", n, text)
	}
}
