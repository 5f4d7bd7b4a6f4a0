package console

import (
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// state is an endpoint's state in a word, with a symbol so that it reads without colour
// (the class adds colour for those who see it) and why.
type state struct {
	Word, Symbol, Class, Why string
}

// stateOf folds the endpoint's conditions into the one state a person looks for first;
// the conditions themselves are shown beside it.
func stateOf(ep *heraldv1.WebhookEndpoint) state {
	c := ep.Status.Conditions
	dis := meta.FindStatusCondition(c, heraldv1.ConditionDisabled)
	ready := meta.FindStatusCondition(c, heraldv1.ConditionReady)
	deliv := meta.FindStatusCondition(c, heraldv1.ConditionDelivering)
	switch {
	case dis != nil && dis.Status == metav1.ConditionTrue:
		return state{"Disabled", "✗", "bad", dis.Reason + ": " + dis.Message}
	case ep.Spec.Suspend:
		return state{"Suspended", "⏸", "held", "spec.suspend holds the deliveries until it is set back to false"}
	case ready != nil && ready.Status != metav1.ConditionTrue:
		return state{"Not ready", "!", "bad", ready.Reason + ": " + ready.Message}
	case ep.Status.BlockedBy != nil:
		b := ep.Status.BlockedBy
		return state{"Blocked", "⧗", "warn", fmt.Sprintf("ordered: event %s has failed %d times since %s; the deliveries after it wait",
			b.EventID, b.FailedAttempts, b.Since.UTC().Format(time.RFC3339))}
	case deliv != nil && deliv.Status == metav1.ConditionTrue:
		return state{"Delivering", "✓", "ok", ""}
	case deliv != nil:
		return state{"Held", "⏸", "held", deliv.Reason + ": " + deliv.Message}
	case ready != nil:
		return state{"Ready", "✓", "ok", "the dispatcher has not reported on it yet"}
	}
	return state{"Unknown", "?", "unknown", "no status yet: is the herald manager running?"}
}

// condition is one condition in a word: True, False (Reason) or Unknown.
type condition struct{ Type, Value string }

func conditionsOf(ep *heraldv1.WebhookEndpoint) []condition {
	var out []condition
	for _, typ := range []string{heraldv1.ConditionReady, heraldv1.ConditionDelivering, heraldv1.ConditionDisabled} {
		c := meta.FindStatusCondition(ep.Status.Conditions, typ)
		switch {
		case c == nil:
			out = append(out, condition{typ, "Unknown"})
		case c.Status == metav1.ConditionTrue:
			out = append(out, condition{typ, "True"})
		default:
			out = append(out, condition{typ, string(c.Status) + " (" + c.Reason + ")"})
		}
	}
	return out
}

// endpointView is an endpoint as the pages show it.
type endpointView struct {
	Namespace, Name, URL string
	State                state
	Conditions           []condition
	Ordered              bool
	Blocked              *heraldv1.BlockingDelivery
	Counters             heraldv1.DeliveryCounters
	Failures             int32
	LastAttempt          *heraldv1.DeliveryAttempt
	LastSuccess          *metav1.Time
	Replay               *heraldv1.ReplayStatus
	Style                heraldv1.SignatureStyle
	Prefix               string
	PublicKey, Previous  string
	Secret               heraldv1.SecretKeySelector
	ResponseBodies       heraldv1.ResponseBodyPolicy
	Disabled             bool
	Deleted              bool
}

func viewOf(ep *heraldv1.WebhookEndpoint) endpointView {
	v := endpointView{
		Namespace: ep.Namespace, Name: ep.Name, URL: ep.Spec.URL,
		State: stateOf(ep), Conditions: conditionsOf(ep),
		Ordered: ep.Spec.Ordered(), Blocked: ep.Status.BlockedBy,
		Failures: ep.Status.ConsecutiveFailures, LastAttempt: ep.Status.LastAttempt, LastSuccess: ep.Status.LastSuccessTime,
		Replay: ep.Status.Replay, Style: ep.Spec.SignatureStyle(), Prefix: ep.Spec.HeaderPrefix(),
		PublicKey: ep.Status.PublicKey, Previous: ep.Status.PreviousPublicKey, Secret: ep.SigningSecretRef(),
		ResponseBodies: ep.Spec.ResponseBodyPolicy(),
		Disabled:       meta.IsStatusConditionTrue(ep.Status.Conditions, heraldv1.ConditionDisabled),
	}
	if ep.Status.Counters != nil {
		v.Counters = *ep.Status.Counters
	}
	return v
}

// rowID is the element id of an endpoint's row, which live updates replace.
func rowID(name string) string { return "ep-" + name }

func funcs(now func() time.Time) template.FuncMap {
	return template.FuncMap{
		"ago": func(t any) string {
			var at time.Time
			switch v := t.(type) {
			case time.Time:
				at = v
			case *time.Time:
				if v == nil {
					return "never"
				}
				at = *v
			case metav1.Time:
				at = v.Time
			case *metav1.Time:
				if v == nil {
					return "never"
				}
				at = v.Time
			}
			if at.IsZero() {
				return "never"
			}
			d := now().Sub(at)
			if d < 0 {
				return "in " + duration.HumanDuration(-d)
			}
			return duration.HumanDuration(d) + " ago"
		},
		"ts": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				return v.UTC().Format(time.RFC3339)
			case *time.Time:
				if v != nil {
					return v.UTC().Format(time.RFC3339)
				}
			case metav1.Time:
				return v.UTC().Format(time.RFC3339)
			case *metav1.Time:
				if v != nil {
					return v.UTC().Format(time.RFC3339)
				}
			}
			return ""
		},
		"num": number,
		// rowsHere marks where a streamed page's rows go (pageStream).
		"rowsHere": func() template.HTML { return rowsMark },
		"ms":       func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + " ms" },
		"seg":      url.PathEscape,
		"rowID":    rowID,
		"outcome": func(code int, errText string) string {
			if code != 0 {
				return "HTTP " + strconv.Itoa(code)
			}
			if errText != "" {
				return errText
			}
			return "no answer"
		},
		"attemptOutcome": func(a *heraldv1.DeliveryAttempt) string {
			switch {
			case a == nil:
				return "none yet"
			case a.StatusCode != 0:
				return "HTTP " + strconv.Itoa(int(a.StatusCode))
			case a.Error != "":
				return a.Error
			}
			return "no answer"
		},
		"failed": func(code int, errText string) bool { return errText != "" || code < 200 || code > 299 },
		"percent": func(part, whole int64) int64 {
			if whole <= 0 {
				return 0
			}
			return part * 100 / whole
		},
		"lines": func(s string) []string { return strings.Split(s, "\n") },
	}
}

// number writes n with thousands separators.
func number(n any) string {
	var v int64
	switch x := n.(type) {
	case int:
		v = int64(x)
	case int32:
		v = int64(x)
	case int64:
		v = x
	}
	s := strconv.FormatInt(v, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
