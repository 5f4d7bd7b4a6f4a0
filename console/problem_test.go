package console

import (
	"reflect"
	"testing"
)

// TestProblemText_KeepsTheCLIsCommandsApartToCopy: the errors the console shows come
// from the CLI's clients, which indent the commands they advise by two spaces; the
// page shows those as blocks to copy, consecutive ones together, and the rest as prose.
func TestProblemText_KeepsTheCLIsCommandsApartToCopy(t *testing.T) {
	for _, tc := range []struct {
		why  string
		in   string
		want []problemPart
	}{{
		why: "a 403 of the endpoint API: the grant, then the note on the refusal cache",
		in:  "the dispatcher refused listing dead letters: forbidden: system:serviceaccount:shop:pub may not get webhookendpoints.hooks.herald.dev in namespace shop; grant it (as a user who may create RoleBindings in shop):\n  kubectl create rolebinding pub-herald-operator -n shop --clusterrole=herald-operator --serviceaccount=shop:pub\nThe dispatcher keeps a refusal for 10s: retry 10s after the binding is made.",
		want: []problemPart{
			{Text: "the dispatcher refused listing dead letters: forbidden: system:serviceaccount:shop:pub may not get webhookendpoints.hooks.herald.dev in namespace shop; grant it (as a user who may create RoleBindings in shop):"},
			{Text: "kubectl create rolebinding pub-herald-operator -n shop --clusterrole=herald-operator --serviceaccount=shop:pub", Command: true},
			{Text: "The dispatcher keeps a refusal for 10s: retry 10s after the binding is made."},
		},
	}, {
		why: "a recipe of several commands is one block, pasted together",
		in:  "no credentials for the dispatcher:\n  kubectl create serviceaccount herald-operator -n shop\n  kubectl create rolebinding herald-operator -n shop --clusterrole=herald-operator --serviceaccount=shop:herald-operator\n  export HERALD_TOKEN=$(kubectl create token herald-operator -n shop --audience hooks.herald.dev)",
		want: []problemPart{
			{Text: "no credentials for the dispatcher:"},
			{Text: "kubectl create serviceaccount herald-operator -n shop\nkubectl create rolebinding herald-operator -n shop --clusterrole=herald-operator --serviceaccount=shop:herald-operator\nexport HERALD_TOKEN=$(kubectl create token herald-operator -n shop --audience hooks.herald.dev)", Command: true},
		},
	}, {
		why:  "an indented line that is no command stays prose",
		in:   "first line\n  not a command",
		want: []problemPart{{Text: "first line\n  not a command"}},
	}} {
		if got := problemText(tc.in).Parts; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\ngot  %#v\nwant %#v", tc.why, got, tc.want)
		}
	}
}
