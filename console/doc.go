// Package console is the web console `herald console` serves on 127.0.0.1: the
// namespaces a person may read, their WebhookEndpoints (state, counters, a chart of
// the last hour's attempts), subscriptions and their filter errors, an endpoint's
// attempts and dead letters with how to verify its signatures, an event's deliveries
// by id, and the actions (re-enable, replay dead letters, resend) after a
// confirmation.
//
// It acts as the person who started it and no more: it reads the API server and the
// dispatcher's endpoint API only through Cluster, Deliveries and Actions (source.go),
// which herald console (cli/console.go) wires to the CLI's clients over the
// kubeconfig's identity, so a refusal carries the command the CLI prints. Server
// guards the address (a secret traded for a cookie, the host name, forms only from its
// own pages).
//
// Pages are rendered on the server (html/template, templates/); a namespace page's
// rows are sent as the API server's list arrives, decoded one endpoint at a time
// (Page.Each, pageStream), so the browser lays out the first while the last are read.
// The only script, assets/live.js, applies the live updates a page's stream of
// server-sent events carries (live.go): each open page watches its namespace's
// WebhookEndpoints from the resourceVersion it was read at, and what comes from the
// dispatcher is read again per page, never per endpoint. Every asset is embedded, so
// the console needs no network but the cluster's.
//
// Tests: live_test.go against a real API server (envtest); hack/console drives the
// console in Chromium against a real API server and dispatcher, and benchmarks a page
// of 1,000 endpoints.
package console
