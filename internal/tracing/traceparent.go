// Package tracing carries the W3C trace context of an event from its producer to its
// receivers, and exports the dispatcher's spans over OTLP when an endpoint is
// configured.
//
// Propagation is always on and costs two strings per event: a producer's traceparent
// (HTTP header, or the CloudEvents distributed-tracing extension) is stored with the
// event and sent on every attempt. Export is off unless configured (Start returns a nil
// *Tracer, and every caller checks for nil), so that a dispatcher without a collector
// pays for neither spans nor their export.
package tracing

import "strings"

// maxTraceState bounds a stored tracestate: the W3C limit is 32 list members, and 512
// characters is what the specification asks implementations to propagate at least.
const maxTraceState = 512

// Parse validates a W3C traceparent (https://www.w3.org/TR/trace-context/ §3.2) and the
// tracestate that goes with it. It returns the traceparent in its version 00 form and
// the tracestate, or two empty strings when traceparent is absent or invalid: the
// specification says to ignore an invalid one rather than refuse the request, and a
// tracestate is meaningless without its traceparent.
func Parse(traceparent, tracestate string) (string, string) {
	tp := strings.TrimSpace(traceparent)
	if len(tp) < 55 {
		return "", ""
	}
	version := tp[:2]
	switch {
	case !isLowerHex(version) || version == "ff":
		return "", ""
	case version == "00" && len(tp) != 55:
		return "", ""
	case len(tp) > 55 && tp[55] != '-':
		// A later version may append fields, after a '-'; its first 55 characters are
		// read as version 00.
		return "", ""
	}
	tp = tp[:55]
	if tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return "", ""
	}
	traceID, parentID, flags := tp[3:35], tp[36:52], tp[53:55]
	if !isLowerHex(traceID) || !isLowerHex(parentID) || !isLowerHex(flags) ||
		allZero(traceID) || allZero(parentID) {
		return "", ""
	}
	if version != "00" {
		tp = "00" + tp[2:]
	}
	return tp, cleanTraceState(tracestate)
}

// TraceID returns the trace id of a traceparent Parse accepted.
func TraceID(traceparent string) string {
	if len(traceparent) != 55 {
		return ""
	}
	return traceparent[3:35]
}

// cleanTraceState keeps a tracestate of printable ASCII within the length bound, and
// drops anything else (the specification allows dropping it).
func cleanTraceState(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxTraceState {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return ""
		}
	}
	return s
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	return strings.Trim(s, "0") == ""
}
