package wire

import "net/url"

// Audience is the audience a ServiceAccount token sent to Herald is minted for (a
// projected serviceAccountToken volume, or kubectl create token --audience): the
// dispatcher refuses tokens for any other, so a token sent to Herald cannot be used
// against the API server, nor a pod's API server token here.
const Audience = "hooks.herald.dev"

// Where a default install serves the ingest and endpoint API: the dispatcher's Service
// (in the release's namespace) and its port. The manager names what it deploys with
// them; clients that find the dispatcher on their own (herald console's port-forward)
// look there.
const (
	DefaultService = "herald-dispatcher"
	Port           = 8080
)

// The routes of the ingest API and the endpoint API, as http.ServeMux patterns (without
// the method) with the path parameters namespace, name and id. The server registers
// them; the client fills them in with the functions below.
const (
	// RouteEvents takes one event (POST).
	RouteEvents = "/v1/namespaces/{namespace}/events"
	// RouteEventsBatch takes a batch of events (POST).
	RouteEventsBatch = RouteEvents + ":batch"
	// RouteEvent is an event's history: each endpoint it went to, every attempt (GET).
	RouteEvent = "/v1/namespaces/{namespace}/events/{id}"
	// RouteEndpoint is the prefix of an endpoint's routes below.
	RouteEndpoint = "/v1/namespaces/{namespace}/endpoints/{name}"
	// RouteDeadLetters lists an endpoint's dead letters (GET).
	RouteDeadLetters = RouteEndpoint + "/dead-letters"
	// RouteDeadLettersReplay replays dead letters and waits for it (POST).
	RouteDeadLettersReplay = RouteDeadLetters + ":replay"
	// RouteReplays starts a replay by selection in the background (POST).
	RouteReplays = RouteEndpoint + "/replays"
	// RouteAttempts reads an endpoint's attempt log (GET).
	RouteAttempts = RouteEndpoint + "/attempts"
	// RouteEnable re-enables an auto-disabled endpoint (POST).
	RouteEnable = RouteEndpoint + "/enable"
	// RouteOpenAPI is the endpoint's receiver documentation, OpenAPI 3.1 (GET).
	RouteOpenAPI = RouteEndpoint + "/openapi"
	// RouteAttemptsSummary counts a namespace's attempt log per minute (GET).
	RouteAttemptsSummary = "/v1/namespaces/{namespace}/attempts:summary"
	// RouteEndpointAttemptsSummary counts an endpoint's attempt log per minute (GET).
	RouteEndpointAttemptsSummary = RouteAttempts + ":summary"
)

// EventsPath is RouteEvents of a namespace.
func EventsPath(namespace string) string {
	return "/v1/namespaces/" + url.PathEscape(namespace) + "/events"
}

// EventsBatchPath is RouteEventsBatch of a namespace.
func EventsBatchPath(namespace string) string { return EventsPath(namespace) + ":batch" }

// EventPath is RouteEvent of an event id in a namespace.
func EventPath(namespace, id string) string { return EventsPath(namespace) + "/" + url.PathEscape(id) }

// AttemptsSummaryPath is RouteAttemptsSummary of a namespace.
func AttemptsSummaryPath(namespace string) string {
	return "/v1/namespaces/" + url.PathEscape(namespace) + "/attempts:summary"
}

// EndpointPath is RouteEndpoint of an endpoint followed by suffix ("/dead-letters",
// "/dead-letters:replay", "/replays", "/attempts", "/attempts:summary", "/enable",
// "/openapi").
func EndpointPath(namespace, name, suffix string) string {
	return "/v1/namespaces/" + url.PathEscape(namespace) + "/endpoints/" + url.PathEscape(name) + suffix
}
