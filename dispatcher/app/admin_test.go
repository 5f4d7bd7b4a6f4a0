package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/pkg/wire"
)

// serviceAccountToken creates a ServiceAccount bound to a Role with verbs on
// webhookendpoints in ns, and mints a token for it with the TokenRequest API.
func serviceAccountToken(t *testing.T, c client.Client, ns, name string, verbs ...string) string {
	t.Helper()
	objs := []client.Object{&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}}
	if len(verbs) > 0 {
		objs = append(objs,
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{heraldv1.GroupVersion.Group}, Resources: []string{"webhookendpoints"}, Verbs: verbs,
			}}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}})
	}
	mustCreate(t, c, objs...)
	cs := kubernetes.NewForConfigOrDie(env.Config)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func call(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func TestDispatcher_EndpointAPIListsAndReplaysDeadLettersAndReenables(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "adminapi"
	s := newSink(t)
	var failing atomic.Bool
	failing.Store(true)
	var requests = make(chan struct{}, 100)
	inner := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests <- struct{}{}
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		inner.ServeHTTP(w, r)
	})
	fixture(t, c, ns, "api", heraldv1.WebhookEndpointSpec{
		URL: s.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"10ms"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](4)},
	})
	operator := serviceAccountToken(t, c, ns, "operator", "get", "replay", "enable")
	// update was what replaying asked for before it had a verb of its own: no longer enough.
	editor := serviceAccountToken(t, c, ns, "editor", "get", "update", "patch")
	viewer := serviceAccountToken(t, c, ns, "viewer", "get")
	stranger := serviceAccountToken(t, c, ns, "stranger")
	d := startDispatcher(t)
	base := d.url + "/v1/namespaces/" + ns + "/endpoints/api"

	d.publish(ns, "evt_a", "order.created")
	d.publish(ns, "evt_b", "order.paid")
	var list wire.DeadLetterList
	deadline := time.Now().Add(30 * time.Second)
	for len(list.Items) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dead letters listed: %+v", list)
		}
		time.Sleep(100 * time.Millisecond)
		code, raw := call(t, http.MethodGet, base+"/dead-letters", viewer, nil)
		if code != http.StatusOK {
			t.Fatalf("list: %d %s", code, raw)
		}
		_ = json.Unmarshal(raw, &list)
	}
	// Both are there (in the order they died; the workers run concurrently).
	for _, it := range list.Items {
		if (it.EventID != "evt_a" && it.EventID != "evt_b") || it.Attempts != 2 || it.StatusCode != http.StatusBadGateway || it.Reason != "RetriesExhausted" {
			t.Errorf("dead letter = %+v", it)
		}
	}

	// Who may do what: the viewer reads but does not replay; a stranger does neither;
	// update and patch (the spec) are neither replay nor enable.
	for _, c := range []struct {
		who, token, method, url, want string
		body                          any
	}{
		{"viewer", viewer, http.MethodPost, base + "/dead-letters:replay", "system:serviceaccount:" + ns + ":viewer may not replay webhookendpoints.hooks.herald.dev in namespace " + ns, wire.ReplayRequest{All: true}},
		{"editor", editor, http.MethodPost, base + "/dead-letters:replay", "may not replay webhookendpoints.hooks.herald.dev", wire.ReplayRequest{All: true}},
		{"editor", editor, http.MethodPost, base + "/replays", "may not replay webhookendpoints.hooks.herald.dev", wire.ReplaySelectionRequest{All: true}},
		{"editor", editor, http.MethodPost, base + "/enable", "may not enable webhookendpoints.hooks.herald.dev", nil},
		{"viewer", viewer, http.MethodPost, base + "/enable", "may not enable webhookendpoints.hooks.herald.dev", nil},
	} {
		if code, raw := call(t, c.method, c.url, c.token, c.body); code != http.StatusForbidden || !strings.Contains(string(raw), c.want) {
			t.Errorf("%s POST %s = %d %s, want 403 saying %q", c.who, c.url, code, raw, c.want)
		}
	}
	// One error shape and one code casing on the port, whichever API answers.
	for _, c := range []struct {
		what, method, url, token string
		status                   int
		code                     string
	}{
		{"stranger lists dead letters", http.MethodGet, base + "/dead-letters", stranger, http.StatusForbidden, wire.CodeForbidden},
		{"stranger publishes", http.MethodPost, d.url + "/v1/namespaces/" + ns + "/events", stranger, http.StatusForbidden, wire.CodeForbidden},
		{"anonymous lists dead letters", http.MethodGet, base + "/dead-letters", "", http.StatusUnauthorized, wire.CodeUnauthenticated},
		{"anonymous publishes", http.MethodPost, d.url + "/v1/namespaces/" + ns + "/events", "", http.StatusUnauthorized, wire.CodeUnauthenticated},
	} {
		var body any
		if c.method == http.MethodPost {
			body = map[string]any{"type": "order.created", "data": map[string]any{}}
		}
		code, raw := call(t, c.method, c.url, c.token, body)
		var e wire.ErrorResponse
		if err := json.Unmarshal(raw, &e); err != nil || code != c.status || e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s = %d %s, want %d with code %q and a message", c.what, code, raw, c.status, c.code)
		}
	}
	if code, raw := call(t, http.MethodPost, base+"/dead-letters:replay", operator, wire.ReplayRequest{}); code != http.StatusBadRequest || !strings.Contains(string(raw), "all: true") {
		t.Errorf("empty selection = %d %s, want 400 explaining the choice", code, raw)
	}
	if code, _ := call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/endpoints/nope/dead-letters", operator, nil); code != http.StatusNotFound {
		t.Errorf("unknown endpoint = %d, want 404", code)
	}

	// Four failed attempts disabled the endpoint; re-enable it through the API.
	code, raw := call(t, http.MethodPost, base+"/enable", operator, nil)
	if code != http.StatusOK || !strings.Contains(string(raw), `"wasDisabled":true`) {
		t.Fatalf("enable = %d %s", code, raw)
	}

	// Replay one by event id: it is delivered with its id, the other stays.
	failing.Store(false)
	code, raw = call(t, http.MethodPost, base+"/dead-letters:replay", operator, wire.ReplayRequest{EventIDs: []string{"evt_b"}})
	if code != http.StatusOK || !strings.Contains(string(raw), `"replayed":1`) {
		t.Fatalf("replay = %d %s", code, raw)
	}
	s.waitEvent(t, "evt_b", 20*time.Second)
	_, raw = call(t, http.MethodGet, base+"/dead-letters", viewer, nil)
	_ = json.Unmarshal(raw, &list)
	if len(list.Items) != 1 || list.Items[0].EventID != "evt_a" {
		t.Errorf("left after replay: %+v", list.Items)
	}
}
