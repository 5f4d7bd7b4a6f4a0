package queue

import (
	"strings"
)

// Endpoint names one WebhookEndpoint object: its namespace, its name and its UID. The
// UID tells apart two objects of the same name, one deleted and one created later, so
// everything Herald stores for an endpoint (pending deliveries, dead letters, retained
// deliveries, attempt records, ordered heads, shared state) is keyed by all three: the
// data of a deleted endpoint is never reachable by its successor, whatever happens to the
// purge that reclaims it (see Purge).
type Endpoint struct{ Namespace, Name, UID string }

// String names the endpoint as people do, namespace/name.
func (e Endpoint) String() string { return e.Namespace + "/" + e.Name }

// tokens is the endpoint as three subject tokens: namespace, name, UID. Kubernetes
// namespaces hold no '.', names may (mapped to '_', which they never hold), and UIDs are
// hexadecimal with dashes.
func (e Endpoint) tokens() string {
	return e.Namespace + "." + subjectToken(e.Name) + "." + e.UID
}

// subjectToken maps an object name onto one NATS subject token. Kubernetes names never
// contain '_' but may contain '.', which separates NATS tokens, so the mapping is
// one-to-one.
func subjectToken(name string) string { return strings.ReplaceAll(name, ".", "_") }

func nameOfToken(tok string) string { return strings.ReplaceAll(tok, "_", ".") }

// EndpointKey is the key, in the state bucket, of one kind of record of an endpoint
// (kind has no '.'): every per-endpoint key ends in the endpoint's three tokens, so that
// Purge removes them all without knowing their kinds.
func EndpointKey(kind string, e Endpoint) string { return kind + "." + e.tokens() }

// ParseEndpointKey reads a key written by EndpointKey.
func ParseEndpointKey(key string) (kind string, e Endpoint, ok bool) {
	parts := strings.Split(key, ".")
	if len(parts) != 4 || parts[3] == "" {
		return "", Endpoint{}, false
	}
	return parts[0], Endpoint{Namespace: parts[1], Name: nameOfToken(parts[2]), UID: parts[3]}, true
}

// endpointOfTokens reads an endpoint from its three subject tokens.
func endpointOfTokens(ns, name, uid string) Endpoint {
	return Endpoint{Namespace: ns, Name: nameOfToken(name), UID: uid}
}

// DeliverySubject is the subject holding the deliveries of one endpoint (one
// concatenation: it is made for every delivery stored).
func DeliverySubject(e Endpoint) string {
	return deliverySubjectPrefix + e.Namespace + "." + subjectToken(e.Name) + "." + e.UID
}

// DeadLetterSubject is the subject holding the dead letters of one endpoint.
func DeadLetterSubject(e Endpoint) string {
	return deadLetterSubjectPrefix + e.Namespace + "." + subjectToken(e.Name) + "." + e.UID
}

// consumerName is the durable consumer of one endpoint. A UID is unique, short and
// made of characters a consumer name may hold.
func consumerName(e Endpoint) string { return "ep_" + e.UID }

// Ref is the endpoint a delivery goes to.
func (d *Delivery) Ref() Endpoint {
	return Endpoint{Namespace: d.Namespace, Name: d.Endpoint, UID: d.EndpointUID}
}

// subjectUID reads the endpoint UID from a delivery or dead-letter subject
// (herald.dlv.<ns>.<name>.<uid>) or a history subject
// (herald.done.<ns>.<name>.<uid>.<bucket>) without allocating; "" for a subject of the
// layout before UIDs, one token shorter.
func subjectUID(subject string) string {
	if strings.HasPrefix(subject, deliveredSubjectPrefix) || strings.HasPrefix(subject, attemptSubjectPrefix) {
		if strings.Count(subject, ".") != 5 {
			return ""
		}
		subject = subject[:strings.LastIndexByte(subject, '.')]
	} else if strings.Count(subject, ".") != 4 {
		return ""
	}
	return subject[strings.LastIndexByte(subject, '.')+1:]
}
