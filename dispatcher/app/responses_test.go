package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/oauthserver"
	"github.com/herald-dev/herald/pkg/wire"
)

// TestDispatcher_StoredResponseBodiesHoldNoneOfTheEndpointsSecrets: a receiver that
// echoes its Authorization header (a bearer token from a real authorization server) and
// a header whose value comes from a Secret, on an endpoint that keeps every answer's
// body: the attempt log, read back through the endpoint API by someone who may read
// bodies, holds what they are instead of their values.
func TestDispatcher_StoredResponseBodiesHoldNoneOfTheEndpointsSecrets(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "echoes"
	const clientSecret, apiKey = "echo-client-secret", "ak_live/0123456789+abcdef"
	authz := oauthserver.Start("herald-echo", clientSecret, 3600)
	defer authz.Close()
	var mu sync.Mutex
	var sent []string
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		sent = append(sent, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"youSent": r.Header.Get("Authorization"), "apiKey": r.Header.Get("X-Api-Key")})
	}))
	defer echo.Close()
	id := "herald-echo"
	fixture(t, c, ns, "echo", heraldv1.WebhookEndpointSpec{
		URL: echo.URL, Timeout: "2s",
		Headers: []heraldv1.HeaderSpec{{Name: "X-Api-Key", ValueFrom: &heraldv1.SecretKeySelector{Name: "echo-creds", Key: "api-key"}}},
		Auth: &heraldv1.AuthSpec{OAuth2: &heraldv1.OAuth2ClientCredentials{
			TokenURL: authz.URL + "/oauth/token", ClientID: &id,
			ClientSecretRef: heraldv1.SecretKeySelector{Name: "echo-creds", Key: "client-secret"},
		}},
		AttemptLog: heraldv1.AttemptLogSpec{ResponseBody: heraldv1.ResponseBodyAlways},
	})
	mustCreate(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "echo-creds", Namespace: ns},
		StringData: map[string]string{"client-secret": clientSecret, "api-key": apiKey}})
	reader := serviceAccountToken(t, c, ns, "reader", "get")
	mustCreate(t, c, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "responses", Namespace: ns}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{heraldv1.GroupVersion.Group}, Resources: []string{"webhookendpoints/responses"}, Verbs: []string{"get"},
	}}}, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader-responses", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "responses"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: ns}}})
	d := startDispatcher(t)
	d.publish(ns, "evt_echo", "invoice.paid")

	var list wire.AttemptList
	var raw []byte
	deadline := time.Now().Add(30 * time.Second)
	for len(list.Items) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no attempt of evt_echo in the log within 30s: %s", raw)
		}
		time.Sleep(100 * time.Millisecond)
		var code int
		code, raw = call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/endpoints/echo/attempts", reader, nil)
		if code != http.StatusOK || json.Unmarshal(raw, &list) != nil {
			list = wire.AttemptList{}
		}
	}
	mu.Lock()
	token := strings.TrimPrefix(sent[0], "Bearer ")
	mu.Unlock()
	if !authz.Valid(token) {
		t.Fatalf("the receiver was sent Authorization %q, not a token the server issued", sent[0])
	}
	a := list.Items[0]
	want := fmt.Sprintf(`{"apiKey":"%s","youSent":"Bearer %s"}`, "[redacted: header X-Api-Key]", "[redacted: OAuth2 bearer token]")
	if a.StatusCode != http.StatusOK || strings.TrimSpace(a.Body) != want || list.BodiesWithheld != "" {
		t.Errorf("attempt = %+v, withheld %q; want the body %s", a, list.BodiesWithheld, want)
	}
	for _, leak := range []string{token, apiKey, clientSecret} {
		if strings.Contains(string(raw), leak) {
			t.Errorf("the attempt log holds %q: %s", leak, raw)
		}
	}
}
