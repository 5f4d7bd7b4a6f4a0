package sender

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// Secret is one of the endpoint's own secret values. A response body kept for the
// attempt log never holds one: a receiver that echoes what it was sent (its Authorization
// header, say) would otherwise put the endpoint's credentials in the log.
type Secret struct {
	// What names the value in its placeholder, "[redacted: <what>]": "signing secret",
	// "header X-Api-Key". Never the value itself.
	What  string
	Value []byte
}

// minTailMatch is the shortest end of a sample that is redacted for being the start of
// a secret cut off by the sample's size limit.
const minTailMatch = 4

// redactor replaces secret values, as written and as commonly re-encoded by a receiver
// that echoes them (JSON string escapes, "\/", URL escapes, the part after a kind prefix
// such as "whsec_"), with a placeholder naming them.
type redactor struct {
	forms []form // longest first, so a value is replaced before any part of it
}

type form struct {
	text, mark []byte
}

func newRedactor(secrets []Secret) *redactor {
	r := &redactor{}
	for _, s := range secrets {
		r.forms = appendForms(r.forms, s)
	}
	r.sort()
	return r
}

// with returns a redactor that also replaces extra (the bearer token of one attempt).
func (r *redactor) with(extra ...Secret) *redactor {
	out := &redactor{forms: slices.Clone(r.forms)}
	for _, s := range extra {
		out.forms = appendForms(out.forms, s)
	}
	out.sort()
	return out
}

func (r *redactor) sort() {
	slices.SortStableFunc(r.forms, func(a, b form) int { return len(b.text) - len(a.text) })
}

func appendForms(forms []form, s Secret) []form {
	if len(s.Value) == 0 {
		return forms
	}
	mark := []byte("[redacted: " + s.What + "]")
	v := string(s.Value)
	texts := []string{v}
	for _, html := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		if enc.Encode(v) == nil {
			quoted := strings.TrimSuffix(b.String(), "\n")
			inner := quoted[1 : len(quoted)-1]
			texts = append(texts, inner, strings.ReplaceAll(inner, "/", `\/`))
		}
	}
	texts = append(texts, url.QueryEscape(v), url.PathEscape(v))
	if rest := afterKindPrefix(v); len(rest) >= minTailMatch {
		texts = append(texts, rest)
	}
	for _, t := range texts {
		if t != "" && !slices.ContainsFunc(forms, func(f form) bool { return string(f.text) == t }) {
			forms = append(forms, form{text: []byte(t), mark: mark})
		}
	}
	return forms
}

// afterKindPrefix returns what follows a leading kind prefix of lowercase letters and
// "_" ("whsec_", "whsk_", "sk_live_"), which a receiver may echo alone (the Standard
// Webhooks key is the base64 after "whsec_"); "" when there is none.
func afterKindPrefix(v string) string {
	i := strings.LastIndexByte(v, '_')
	if i <= 0 {
		return ""
	}
	for _, c := range v[:i] {
		if (c < 'a' || c > 'z') && c != '_' {
			return ""
		}
	}
	return v[i+1:]
}

// redact returns b with every secret replaced, and with an end that begins a secret
// (the sample cut it) replaced too.
func (r *redactor) redact(b []byte) []byte {
	if r == nil || len(b) == 0 {
		return b
	}
	for _, f := range r.forms {
		if bytes.Contains(b, f.text) {
			b = bytes.ReplaceAll(b, f.text, f.mark)
		}
	}
	for _, f := range r.forms {
		for n := min(len(f.text)-1, len(b)); n >= minTailMatch; n-- {
			if bytes.HasSuffix(b, f.text[:n]) {
				return append(b[:len(b)-n:len(b)-n], f.mark...)
			}
		}
	}
	return b
}

// keepsBody reports whether an answer with status code's body is kept, by policy.
func keepsBody(policy heraldv1.ResponseBodyPolicy, code int) bool {
	switch policy {
	case heraldv1.ResponseBodyAlways:
		return true
	case heraldv1.ResponseBodyOnFailure:
		return code < 200 || code >= 300
	}
	return false
}
