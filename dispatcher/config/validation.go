package config

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/herald-dev/herald/internal/outbound"
)

// Validate is the one judge of a configuration: `herald dispatcher` refuses to start
// on what it refuses, and the manager refuses to render it. Each problem names the key
// in the file (as in testdata/defaults.yaml), which is also the chart value under
// dispatcher.* where the chart has one; all problems are reported at once.
func (c Dispatcher) Validate() error {
	var errs []error
	bad := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	notNegative := func(path string, v int64) {
		if v < 0 {
			bad(path, "must be 0 or more, not %d", v)
		}
	}
	notNegativeDuration := func(path string, d time.Duration) {
		if d < 0 {
			bad(path, "must be 0 or more, not %s", d)
		}
	}

	if c.APIVersion != APIVersion || c.Kind != Kind {
		bad("apiVersion, kind", "must be %s, %s, not %q, %q", APIVersion, Kind, c.APIVersion, c.Kind)
	}
	for _, ns := range c.WatchNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			bad("watchNamespaces", "%q: %s", ns, msgs[0])
		}
	}

	if (c.Serving.TLS.CertFile == "") != (c.Serving.TLS.KeyFile == "") {
		bad("serving.tls", "certFile and keyFile go together")
	}

	s := c.Store
	if s.URL == "" && s.DataDir == "" {
		bad("store.dataDir", "is required for the embedded store (store.url empty)")
	}
	if s.URL != "" {
		if u, err := url.Parse(s.URL); err != nil || u.Host == "" {
			bad("store.url", "%q is not a NATS URL such as nats://nats.nats:4222", s.URL)
		}
		if s.SyncAlways {
			bad("store.syncAlways", "applies to the embedded store; an external cluster's servers are configured with jetstream { sync_interval: always }")
		}
	}
	if s.Replicas < 0 || s.Replicas > 5 {
		bad("store.replicas", "must be between 1 and 5, or 0 to let the dispatcher choose, not %d", s.Replicas)
	}
	notNegativeDuration("store.dedupeWindow", s.DedupeWindow)
	notNegative("store.maxDedupeRecords", s.MaxDedupeRecords)
	notNegative("store.maxPendingDeliveries", s.MaxPendingDeliveries)
	notNegative("store.maxPendingBytes", s.MaxPendingBytes)
	notNegativeDuration("store.deadLetterMaxAge", s.DeadLetterMaxAge)
	notNegative("store.deadLetterMaxBytes", s.DeadLetterMaxBytes)

	h := c.History
	notNegativeDuration("history.retainDeliveredMaxAge", h.RetainDeliveredMaxAge)
	notNegative("history.retainDeliveredMaxBytes", h.RetainDeliveredMaxBytes)
	notNegativeDuration("history.attemptLogMaxAge", h.AttemptLogMaxAge)
	notNegative("history.attemptLogMaxBytes", h.AttemptLogMaxBytes)
	if h.ReplayRate < 0 {
		bad("history.replayRate", "must be 0 (no bound) or more, not %g", h.ReplayRate)
	}

	i := c.Ingest
	notNegative("ingest.maxBodyBytes", i.MaxBodyBytes)
	notNegative("ingest.maxBatchEvents", int64(i.MaxBatchEvents))
	notNegative("ingest.maxConcurrent", int64(i.MaxConcurrent))
	notNegativeDuration("ingest.bodyTimeout", i.BodyTimeout)

	d := c.Delivery
	notNegativeDuration("delivery.ackWait", d.AckWait)
	notNegative("delivery.maxHeld", d.MaxHeld)
	notNegativeDuration("delivery.maxHeldAge", d.MaxHeldAge)

	if e := c.Egress.Proxy; e != "" {
		if x, err := outbound.ParseProxy(e); err != nil {
			bad("egress.proxy", "%v", err)
		} else if x.Username != "" || x.Password != "" {
			bad("egress.proxy", "must not carry credentials; they are read from %s and %s (the manager's --dispatcher-egress-proxy-credentials-secret)", EnvProxyUsername, EnvProxyPassword)
		} else if err := c.Outbound.CheckProxy(&outbound.Proxy{Host: x.Host, Port: x.Port, Operator: true}); err != nil {
			// Even the operator's proxy may not sit at a metadata address.
			bad("egress.proxy", "%v", err)
		}
	}
	if err := outbound.CheckNoProxy(c.Egress.NoProxy); err != nil {
		bad("egress.noProxy", "%v", err)
	}

	notNegativeDuration("status.interval", c.Status.Interval)
	notNegativeDuration("status.operationalEventsInterval", c.Status.OperationalEventsInterval)

	if e := c.Tracing.OTLPEndpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("tracing.otlpEndpoint", "%q must be an http(s) URL such as http://otel-collector.observability:4318", e)
		}
	}
	if c.Log.Verbosity < 0 {
		bad("log.verbosity", "must be 0 (info) or more, not %d", c.Log.Verbosity)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid dispatcher configuration: %w", err)
	}
	return nil
}
