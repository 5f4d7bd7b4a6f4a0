// Command receiver is the cluster suite's in-cluster webhook receiver, run as a pod behind
// a ClusterIP Service that an endpoint names by reference (spec.service). It verifies
// every request with the Standard Webhooks reference receiver (internal/refreceiver,
// which shares no code with Herald) and the signing secret the pod gets from the
// endpoint's Secret, answers 200 when the signature verifies and 401 when it does not,
// and prints one line per request, which the suite reads back with `kubectl logs`:
//
//	received id=<webhook-id> host=<Host header> path=<path> verified=<bool>
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/herald-dev/herald/internal/refreceiver"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	flag.Parse()
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		fmt.Fprintln(os.Stderr, "receiver: WEBHOOK_SECRET (the endpoint's signing secret) is required")
		os.Exit(2)
	}
	mux := http.NewServeMux()
	// The readiness probe: the Service sends nothing here before the pod is Ready.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ok := refreceiver.StandardWebhooks(secret, r.Header, body, time.Now())
		fmt.Printf("received id=%s host=%s path=%s verified=%t\n", r.Header.Get("Webhook-Id"), r.Host, r.URL.Path, ok)
		if !ok {
			http.Error(w, "Invalid signature", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("OK"))
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "receiver: listening on %s\n", *listen)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintf(os.Stderr, "receiver: %v\n", err)
		os.Exit(1)
	}
}
