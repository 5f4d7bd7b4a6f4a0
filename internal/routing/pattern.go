package routing

import (
	"fmt"
	"strings"
)

// MaxPatternLength mirrors the CRD's limit on one eventTypes entry.
const MaxPatternLength = 253

// MatchType reports whether eventType matches pattern. A pattern is an exact event type
// ("invoice.paid") or a glob in which '*' matches any run of characters, dots included
// and possibly empty: "approval.*" matches "approval.granted" and "approval.x.y" but not
// "approval" (the dot is literal); "*" matches every type. Matching is case-sensitive,
// as event types are identifiers.
func MatchType(pattern, eventType string) bool {
	// The classic linear-time wildcard algorithm: on a mismatch, backtrack only to the
	// most recent '*' and let it swallow one more character. With a single wildcard kind
	// that never needs to revisit an earlier star, so patterns cannot cause exponential
	// work, and nothing is allocated on the routing hot path.
	p, s := 0, 0
	star, mark := -1, 0
	for s < len(eventType) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, s
			p++
		case p < len(pattern) && pattern[p] == eventType[s]:
			p++
			s++
		case star >= 0:
			p = star + 1
			mark++
			s = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ValidPattern returns an error saying what is wrong with an eventTypes pattern, or nil.
// The CRD already refuses characters outside [A-Za-z0-9._*-]; this adds the checks a
// regular expression in the schema would make unreadable: no empty dot-separated
// segments (a typo such as "order..paid" or "approval." can never match what the author
// meant) and no "**", which in other tools means "across segments" and here would only
// suggest that a single '*' does not already do so.
func ValidPattern(p string) error {
	if p == "" {
		return fmt.Errorf("event type pattern is empty")
	}
	if len(p) > MaxPatternLength {
		return fmt.Errorf("event type pattern is %d characters long; at most %d are allowed", len(p), MaxPatternLength)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '*') {
			return fmt.Errorf("event type pattern %q contains %q; only letters, digits, '.', '_', '-' and '*' are allowed", p, c)
		}
	}
	for i, seg := range strings.Split(p, ".") {
		if seg == "" {
			return fmt.Errorf("event type pattern %q has an empty segment at position %d; segments are separated by a single '.' and cannot be empty", p, i+1)
		}
	}
	if strings.Contains(p, "**") {
		return fmt.Errorf("event type pattern %q contains \"**\"; a single '*' already matches across '.'", p)
	}
	return nil
}
