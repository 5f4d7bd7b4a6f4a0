package queue

import "testing"

// The endpoint's UID travels in the subject alone; each row is a subject kind, or the
// layout before UIDs, which has none.
func TestSubjectUID(t *testing.T) {
	ep := Endpoint{Namespace: "shop", Name: "billing.eu", UID: "0f1e2d3c-0000-4000-8000-000000000001"}
	for _, c := range []struct{ why, subject, want string }{
		{"a pending delivery", DeliverySubject(ep), ep.UID},
		{"a dead letter", DeadLetterSubject(ep), ep.UID},
		{"a retained delivery", historySubject(deliveredSubjectPrefix, ep, "evt_1"), ep.UID},
		{"an attempt record", historySubject(attemptSubjectPrefix, ep, "evt_1"), ep.UID},
		{"a pending delivery before UIDs", "herald.dlv.shop.billing_eu", ""},
		{"a dead letter before UIDs", "herald.dlq.shop.billing_eu", ""},
		{"a retained delivery before UIDs: its last token is the bucket, not a UID", "herald.done.shop.billing_eu.3f", ""},
		{"an attempt record before UIDs", "herald.att.shop.billing_eu.3f", ""},
	} {
		if got := subjectUID(c.subject); got != c.want {
			t.Errorf("%s: subjectUID(%q) = %q, want %q", c.why, c.subject, got, c.want)
		}
	}
	subject := DeliverySubject(ep)
	if got := testing.AllocsPerRun(100, func() { subjectUID(subject) }); got != 0 {
		t.Errorf("%v allocations per read, want none (it is read for every delivery handed out)", got)
	}
}
