package console

import (
	"fmt"
	"strings"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// snippet is what a receiver's developer copies to verify an endpoint's deliveries: a
// Go handler using pkg/verify for the endpoint's signature style, and the way to get
// the key and to check a captured request from a terminal.
type snippet struct {
	Style heraldv1.SignatureStyle
	// Key says where the key comes from.
	Key   string
	Go    string
	Shell string
}

func snippetFor(v *endpointView, prog string) snippet {
	sn := snippet{Style: v.Style}
	secretCmd := fmt.Sprintf("kubectl get secret %s -n %s -o jsonpath='{.data.%s}' | base64 -d > secret.txt",
		v.Secret.Name, v.Namespace, strings.ReplaceAll(v.Secret.Key, ".", `\.`))
	var call string
	switch v.Style {
	case heraldv1.SignatureStandardWebhooksEd25519:
		key := v.PublicKey
		if key == "" {
			key = "whpk_... (not published yet: status.publicKey)"
		}
		sn.Key = "The endpoint's public key (status.publicKey, and ConfigMap " + v.Name + "-public-key); receivers never need the private key."
		call = "verify.StandardWebhooksEd25519(publicKey, r.Header, body)"
		sn.Go = goHandler(fmt.Sprintf("const publicKey = %q", key), call)
		sn.Shell = fmt.Sprintf("%s endpoint public-key %s -n %s > %s.pub\n%s verify --public-key-file %s.pub --headers-file request.txt",
			prog, v.Name, v.Namespace, v.Name, prog, v.Name)
		return sn
	case heraldv1.SignatureStandardWebhooks:
		call = "verify.StandardWebhooks(secret, r.Header, body)"
	case heraldv1.SignatureTimestampedPrefixedHex:
		call = fmt.Sprintf("verify.TimestampedPrefixedHex(secret, %q, r.Header, body)", v.Prefix)
	case heraldv1.SignatureBodyPrefixedHex:
		call = fmt.Sprintf("verify.BodyPrefixedHex(secret, %q, r.Header, body)", v.Prefix)
	case heraldv1.SignatureTimestampedHex:
		call = fmt.Sprintf("verify.TimestampedHex(secret, %q, r.Header, body)", v.Prefix)
	}
	sn.Key = fmt.Sprintf("The signing secret, key %q of Secret %s/%s (reading it needs get on that Secret).", v.Secret.Key, v.Namespace, v.Secret.Name)
	sn.Go = goHandler(`var secret = os.Getenv("WEBHOOK_SECRET") // the Secret's value`, call)
	sn.Shell = secretCmd + "\n" + fmt.Sprintf("%s verify --secret-file secret.txt --headers-file request.txt", prog)
	return sn
}

func goHandler(key, call string) string {
	return `import "github.com/herald-dev/herald/pkg/verify"

` + key + `

func handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := ` + call + `; err != nil {
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	// Delivered at least once: deduplicate on the event id, then handle body.
	w.WriteHeader(http.StatusNoContent)
}`
}
