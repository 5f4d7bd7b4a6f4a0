package app_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/oauthserver"
)

// TestDispatcher_OAuth2FromHeldToBearerDeliveries follows an endpoint with OAuth2 client
// credentials through a real dispatcher: held while the client secret's Secret is
// missing, failing attempts with the token endpoint's refusal on the status (and not
// the secret) while it holds a wrong secret, and delivering with a bearer token the
// receiver checks with the authorization server once it is right.
func TestDispatcher_OAuth2FromHeldToBearerDeliveries(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "oauth2-flow"
	const rightSecret, wrongSecret = "right-client-secret", "wrong-client-secret"
	authz := oauthserver.Start("herald-billing", rightSecret, 3600)
	defer authz.Close()
	s := newSink(t)
	rcv := oauthserver.NewReceiver(authz)
	rcv.Next = s.Config.Handler
	defer rcv.Close()
	id := "herald-billing"
	fixture(t, c, ns, "billing", heraldv1.WebhookEndpointSpec{
		URL: rcv.URL, Timeout: "2s",
		Retry: heraldv1.RetrySpec{Schedule: []string{"1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s", "1s"}},
		Auth: &heraldv1.AuthSpec{OAuth2: &heraldv1.OAuth2ClientCredentials{
			TokenURL: authz.URL + "/oauth/token", ClientID: &id,
			ClientSecretRef: heraldv1.SecretKeySelector{Name: "billing-oauth", Key: "client-secret"},
			Scopes:          []string{"webhooks"},
		}},
	})
	d := startDispatcher(t)
	waitHeld(t, c, d, s, ns, "billing", heraldv1.ReasonReferencedSecretNotFound, "evt_oauth_1")

	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "billing-oauth", Namespace: ns}, StringData: map[string]string{"client-secret": wrongSecret}}
	mustCreate(t, c, creds)
	ep := waitEndpoint(t, c, ns, "billing", "a failed attempt naming the token endpoint's refusal", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.LastAttempt != nil && strings.Contains(ep.Status.LastAttempt.Error, "answered 401 (invalid_client)")
	})
	if got := ep.Status.LastAttempt; got.StatusCode != 0 || strings.Contains(got.Error, wrongSecret) || strings.Contains(got.Error, "refused") {
		t.Errorf("last attempt %+v: want no receiver status and nothing of the token endpoint's description", got)
	}
	if n := rcv.Accepted.Load() + rcv.Refused.Load(); n != 0 {
		t.Fatalf("the receiver was called %d times without a token", n)
	}

	update(t, c, creds, func(s *corev1.Secret) { s.Data = map[string][]byte{"client-secret": []byte(rightSecret)} })
	r, _ := s.waitEvent(t, "evt_oauth_1", 20*time.Second)
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !authz.Valid(tok) {
		t.Fatalf("Authorization %q is not a token the authorization server issued", r.Header.Get("Authorization"))
	}
	d.publish(ns, "evt_oauth_2", "invoice.paid")
	s.waitEvent(t, "evt_oauth_2", 10*time.Second)
	// One token for both deliveries: the second used the cached one.
	if n, refused := authz.Issued(), rcv.Refused.Load(); n != 1 || refused != 0 {
		t.Fatalf("tokens issued %d, deliveries refused %d; want 1 and 0", n, refused)
	}
	if last := authz.Requests()[len(authz.Requests())-1]; !last.Basic || last.Form.Get("scope") != "webhooks" {
		t.Fatalf("token request %+v: want Basic client authentication and the scope", last)
	}
	waitDelivering(t, c, ns, "billing", metav1.ConditionTrue, heraldv1.ReasonDelivering)
}
