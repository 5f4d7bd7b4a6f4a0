package metrics

import "github.com/prometheus/client_golang/prometheus"

// The event catalog and Herald's operational events:
//
//	herald_ingest_deprecated_events_total{namespace,type}
//	    accepted events of a type its WebhookEventType marks deprecated
//	herald_ingest_catalog_refusals_total{namespace,reason}
//	    events refused with 422: reason unknown_event_type or schema_violation
//	herald_operational_events_total{namespace,type}
//	    operational events (herald.*) published into a namespace's route
//
// Types are labels here because a namespace's deprecated types are few and declared by
// its owners, one WebhookEventType each; refusals are counted by reason only, as a
// refused type may be anything a producer sends.
type catalogCollectors struct {
	deprecated  *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	operational *prometheus.CounterVec
}

func newCatalogCollectors() *catalogCollectors {
	return &catalogCollectors{
		deprecated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ingest_deprecated_events_total",
			Help: "Accepted events of a type its WebhookEventType marks deprecated.",
		}, []string{"namespace", "type"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ingest_catalog_refusals_total",
			Help: "Events refused with 422 by the namespace's catalog: reason unknown_event_type or schema_violation.",
		}, []string{"namespace", "reason"}),
		operational: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_operational_events_total",
			Help: "Herald's operational events (herald.*) published into a namespace's route.",
		}, []string{"namespace", "type"}),
	}
}

func (c *catalogCollectors) Describe(ch chan<- *prometheus.Desc) {
	c.deprecated.Describe(ch)
	c.refusals.Describe(ch)
	c.operational.Describe(ch)
}

func (c *catalogCollectors) Collect(ch chan<- prometheus.Metric) {
	c.deprecated.Collect(ch)
	c.refusals.Collect(ch)
	c.operational.Collect(ch)
}

// DeprecatedAccepted counts an accepted event of a deprecated type.
func (m *Metrics) DeprecatedAccepted(namespace, eventType string) {
	m.c.catalog.deprecated.WithLabelValues(namespace, eventType).Inc()
}

// CatalogRefused counts an event refused by the catalog; reason is the error code.
func (m *Metrics) CatalogRefused(namespace, reason string) {
	m.c.catalog.refusals.WithLabelValues(namespace, reason).Inc()
}

// OperationalPublished counts an operational event published into a namespace.
func (m *Metrics) OperationalPublished(namespace, eventType string) {
	m.c.catalog.operational.WithLabelValues(namespace, eventType).Inc()
}
