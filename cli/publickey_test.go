package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// TestEndpointPublicKey_PrintsWhatVerifiesTheDeliveries runs the whole receiver-owner
// path against the real manager: the key pair Herald generates, the public key printed
// for someone who may only get WebhookEndpoints, and herald verify with that key on a
// request signed with the Secret's private key.
func TestEndpointPublicKey_PrintsWhatVerifiesTheDeliveries(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	const ns = "cli-public-key"
	c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	c.create(t,
		&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "ledger", Namespace: ns}, Spec: heraldv1.WebhookEndpointSpec{
			URL: "https://ledger.example/hooks", Signature: heraldv1.SignatureSpec{Style: heraldv1.SignatureStandardWebhooksEd25519},
		}},
		&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: ns}, Spec: heraldv1.WebhookEndpointSpec{
			URL: "https://billing.example/hooks",
		}},
	)
	var ep heraldv1.WebhookEndpoint
	eventually(t, 20*time.Second, "the manager to publish the public key", func() bool {
		err := c.client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "ledger"}, &ep)
		return err == nil && ep.Status.PublicKey != ""
	})
	var secret corev1.Secret
	if err := c.client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "ledger-signing"}, &secret); err != nil {
		t.Fatal(err)
	}
	private := string(secret.Data["secret"])

	// A receiver's owner who may read the endpoint and nothing else.
	c.token(t, ns, "receiver-owner", viewerRule)
	t.Setenv("KUBECONFIG", tokenKubeconfig(t, c, ns, c.kubeToken(t, ns, "receiver-owner")))
	r := mustCLI(t, "endpoint", "public-key", "ledger")
	printed := strings.TrimSpace(r.stdout)
	if printed != ep.Status.PublicKey || !strings.HasPrefix(printed, "whpk_") || r.stdout != printed+"\n" {
		t.Fatalf("printed %q, want status.publicKey %q on one line", r.stdout, ep.Status.PublicKey)
	}

	if st := mustCLI(t, "endpoint", "status", "ledger"); !strings.Contains(st.stdout, "Public key:    "+printed+" (ed25519") {
		t.Errorf("endpoint status ledger does not show the public key:\n%s", st.stdout)
	}

	var keys PublicKeys
	if err := json.Unmarshal([]byte(mustCLI(t, "endpoint", "public-key", "ledger", "-o", "json").stdout), &keys); err != nil {
		t.Fatal(err)
	}
	if keys.PublicKey != printed || keys.ConfigMap != "ledger-public-key" || keys.Namespace != ns {
		t.Errorf("-o json: %+v", keys)
	}

	// What the dispatcher sends, verified with the printed key alone.
	h := signed(t, heraldv1.SignatureStandardWebhooksEd25519, "", time.Now(), private, "")
	v := runVerify(t, "", "--public-key-file", writeFile(t, "ledger.pub", r.stdout), "--headers-file", writeFile(t, "req", dump(h, testBody)))
	if v.code != 0 {
		t.Fatalf("herald verify with the printed key: code %d, %s", v.code, v.stderr)
	}

	// An HMAC endpoint has no public key, and the error says which style gives one.
	if r := runCLI(t, "endpoint", "public-key", "billing"); r.err == nil || !strings.Contains(r.err.Error(), "signs with StandardWebhooks, an HMAC secret") {
		t.Errorf("HMAC endpoint: %v", r.err)
	}
	if r := runCLI(t, "endpoint", "public-key", "ledger", "--previous"); r.err == nil || !strings.Contains(r.err.Error(), "not rotating from an ed25519 key") {
		t.Errorf("--previous without a rotation: %v", r.err)
	}
	if strings.Contains(r.stdout, strings.TrimPrefix(private, "whsk_")) {
		t.Error("the private key was printed")
	}
}
