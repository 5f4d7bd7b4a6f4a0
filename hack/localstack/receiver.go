package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/pkg/verify"
)

// receiver is the demo webhook receiver: one path per endpoint, /<namespace>/<name>. It
// verifies each delivery as a real receiver would, with pkg/verify and the endpoint's
// signing secret, which it reads from the API server (current and, during a rotation,
// previous), and answers 204 when the signature is valid and 401 when it is not, so a
// broken signature shows up as failures on the endpoint's status too.
type receiver struct {
	client  client.Client
	con     *console
	base    string // http://127.0.0.1:port
	dumpDir string // the last request per endpoint, for trying herald verify

	mu         sync.Mutex
	deliveries []delivery
	changed    chan struct{} // closed and replaced on every delivery
}

type delivery struct {
	at                  time.Time
	namespace, endpoint string
	style               heraldv1.SignatureStyle
	eventID, eventType  string
	attempt             string
	verified            bool
	withPrevious        bool
	reason              string
}

func newReceiver(c client.Client, con *console, dumpDir string) *receiver {
	return &receiver{client: c, con: con, dumpDir: dumpDir, changed: make(chan struct{})}
}

// serve runs the receiver on ln until ctx ends.
func (r *receiver) serve(ctx context.Context, ln net.Listener) {
	r.base = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() { _ = srv.Serve(ln) }()
}

// URL is where the endpoint namespace/name should deliver.
func (r *receiver) URL(namespace, name string) string {
	return r.base + "/" + namespace + "/" + name
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ns, name, ok := strings.Cut(strings.Trim(req.URL.Path, "/"), "/")
	if req.Method != http.MethodPost || !ok {
		http.Error(w, "POST /<namespace>/<endpoint>", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	r.dump(ns, name, req, body)
	if answer := req.URL.Query().Get(answerParam); answer != "" {
		// An endpoint of the demo that fails on purpose (?answer=410).
		code, _ := strconv.Atoi(answer)
		id, typ, attempt := describeDelivery(req.Header, body)
		r.record(delivery{at: time.Now(), namespace: ns, endpoint: name, eventID: id, eventType: typ, attempt: attempt,
			reason: fmt.Sprintf("answered %d on purpose (?%s=%s)", code, answerParam, answer)})
		w.WriteHeader(max(code, 400))
		return
	}
	d := delivery{at: time.Now(), namespace: ns, endpoint: name}
	d.style, d.verified, d.withPrevious, d.reason = r.verify(req.Context(), ns, name, req.Header, body)
	d.eventID, d.eventType, d.attempt = describeDelivery(req.Header, body)
	r.record(d)
	if d.verified {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Error(w, "invalid signature", http.StatusUnauthorized)
}

// verify checks the request with the endpoint's secret, then with the previous one.
func (r *receiver) verify(ctx context.Context, ns, name string, h http.Header, body []byte) (style heraldv1.SignatureStyle, ok, previous bool, reason string) {
	var ep heraldv1.WebhookEndpoint
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &ep); err != nil {
		return "", false, false, fmt.Sprintf("reading WebhookEndpoint %s/%s: %v", ns, name, err)
	}
	style = ep.Spec.SignatureStyle()
	if style == heraldv1.SignatureStandardWebhooksEd25519 {
		// A receiver of ed25519 signatures holds the public key Herald publishes, never
		// the private key in the Secret.
		for i, key := range []string{ep.Status.PublicKey, ep.Status.PreviousPublicKey} {
			if key != "" && verify.StandardWebhooksEd25519(key, h, body) == nil {
				return style, true, i == 1, ""
			}
		}
		// Fails: say why, for the current key (an empty one says it is not published yet).
		return style, false, false, verify.StandardWebhooksEd25519(ep.Status.PublicKey, h, body).Error()
	}
	current, err := r.secret(ctx, ns, ep.SigningSecretRef())
	if err != nil {
		return style, false, false, err.Error()
	}
	verr := check(style, ep.Spec.HeaderPrefix(), current, h, body)
	if verr == nil {
		return style, true, false, ""
	}
	if ref, rotating := ep.PreviousSigningSecretRef(); rotating {
		if prev, err := r.secret(ctx, ns, ref); err == nil && check(style, ep.Spec.HeaderPrefix(), prev, h, body) == nil {
			return style, true, true, ""
		}
	}
	return style, false, false, verr.Error()
}

func (r *receiver) secret(ctx context.Context, ns string, ref heraldv1.SecretKeySelector) (string, error) {
	var s corev1.Secret
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &s); err != nil {
		return "", fmt.Errorf("reading signing Secret %s: %w", ref.Name, err)
	}
	v, ok := s.Data[ref.Key]
	if !ok {
		return "", fmt.Errorf("signing Secret %s has no key %q", ref.Name, ref.Key)
	}
	return string(v), nil
}

func check(style heraldv1.SignatureStyle, prefix, secret string, h http.Header, body []byte) error {
	switch style {
	case heraldv1.SignatureStandardWebhooks:
		return verify.StandardWebhooks(secret, h, body)
	case heraldv1.SignatureTimestampedPrefixedHex:
		return verify.TimestampedPrefixedHex(secret, prefix, h, body)
	case heraldv1.SignatureBodyPrefixedHex:
		return verify.BodyPrefixedHex(secret, prefix, h, body)
	case heraldv1.SignatureTimestampedHex:
		return verify.TimestampedHex(secret, prefix, h, body)
	}
	return errors.New("unknown signature style " + string(style))
}

// describeDelivery finds the event id, type and attempt: in Herald's own headers, else
// in the envelope.
func describeDelivery(h http.Header, body []byte) (id, typ, attempt string) {
	for name, vals := range h {
		switch {
		case strings.HasSuffix(name, "-Event-Id"):
			id = vals[0]
		case strings.HasSuffix(name, "-Event-Type"):
			typ = vals[0]
		case strings.HasSuffix(name, "-Delivery-Attempt"):
			attempt = vals[0]
		}
	}
	if id == "" {
		id = h.Get("Webhook-Id")
	}
	if id == "" || typ == "" {
		var env struct{ ID, Type string }
		if json.Unmarshal(body, &env) == nil {
			id, typ = cmpOr(id, env.ID), cmpOr(typ, env.Type)
		}
	}
	return cmpOr(id, "?"), cmpOr(typ, "?"), cmpOr(attempt, "?")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (r *receiver) record(d delivery) {
	mark, note := "✓", ""
	if !d.verified {
		mark, note = "✗", "  "+d.reason
	} else if d.withPrevious {
		note = "  (previous secret)"
	}
	r.con.Line(fmt.Sprintf("[receiver] %s %-24s %-12s %-22s %s  attempt %s%s",
		mark, string(d.style), d.endpoint, d.eventType, d.eventID, d.attempt, note))
	r.mu.Lock()
	r.deliveries = append(r.deliveries, d)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// snapshot returns the deliveries so far and a channel closed at the next one.
func (r *receiver) snapshot() ([]delivery, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.deliveries...), r.changed
}

// dumpPath is where the last request to an endpoint is kept.
func (r *receiver) dumpPath(ns, name string) string {
	return filepath.Join(r.dumpDir, ns+"-"+name+".http")
}

// dump keeps the request as received (request line, headers, body), the input
// `herald verify --headers-file` takes.
func (r *receiver) dump(ns, name string, req *http.Request, body []byte) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), req.Proto, req.Host)
	names := make([]string, 0, len(req.Header))
	for n := range req.Header {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, v := range req.Header[n] {
			fmt.Fprintf(&b, "%s: %s\r\n", n, v)
		}
	}
	b.WriteString("\r\n")
	b.Write(body)
	if err := os.MkdirAll(r.dumpDir, 0o700); err == nil {
		_ = os.WriteFile(r.dumpPath(ns, name), b.Bytes(), 0o600)
	}
}
