package console

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/hack/framework"
)

// TestConsole_InABrowser opens `herald console` in Chromium as an operator (bound to
// herald-operator) and as a publisher (bound to herald-publisher only), against a real
// API server, manager and dispatcher delivering to receivers on 127.0.0.1.
func TestConsole_InABrowser(t *testing.T) {
	b := newBrowser(t) // first: without Chromium there is nothing to start
	w := newWorld(t, true)

	// billing delivers; audit's receiver is overloaded (its deliveries fail twice, a second
	// apart, and are dead-lettered), and keeps the bodies of failed answers; legacy's
	// receiver answers 410 Gone, which disables it at once.
	billingRx := framework.NewReceiver("billing", heraldv1.SignatureStandardWebhooks, "")
	billingRx.Serve(t)
	auditRx := framework.NewReceiver("audit", heraldv1.SignatureTimestampedPrefixedHex, "X-Audit")
	auditRx.Serve(t)
	auditRx.SetRespond(func(framework.Request) (int, string) { return http.StatusServiceUnavailable, "overloaded, try later" })
	// legacy's receiver is back once legacyBack is set: then it takes what it is sent.
	var legacyBack atomic.Bool
	gone := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		if legacyBack.Load() {
			rw.WriteHeader(http.StatusNoContent)
			return
		}
		rw.WriteHeader(http.StatusGone)
		_, _ = rw.Write([]byte(`{"error":"this hook was removed"}`))
	}))
	t.Cleanup(gone.Close)
	w.endpoint(&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing"}, Spec: heraldv1.WebhookEndpointSpec{URL: billingRx.URL()}})
	w.endpoint(&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "audit"}, Spec: heraldv1.WebhookEndpointSpec{
		URL: auditRx.URL(), Signature: heraldv1.SignatureSpec{Style: heraldv1.SignatureTimestampedPrefixedHex, HeaderPrefix: "X-Audit"},
		Retry: schedule("1s"), AutoDisable: failures(100), AttemptLog: heraldv1.AttemptLogSpec{ResponseBody: heraldv1.ResponseBodyOnFailure}}})
	w.endpoint(&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}, Spec: heraldv1.WebhookEndpointSpec{URL: gone.URL + "/hooks/legacy"}})
	// ledger signs with ed25519: its page shows the public key receivers verify with.
	w.endpoint(&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "ledger"}, Spec: heraldv1.WebhookEndpointSpec{
		URL: billingRx.URL(), Signature: heraldv1.SignatureSpec{Style: heraldv1.SignatureStandardWebhooksEd25519}}})
	w.subscription("billing", "billing", "", "invoice.*")
	w.subscription("audit", "audit", "", "invoice.*")
	w.subscription("legacy", "legacy", "", "legacy.*")
	w.subscription("big-invoices", "billing", "event.data.amount > 1000", "invoice.paid")
	billingRx.SetSecret(w.signingSecret("billing"))
	auditRx.SetSecret(w.signingSecret("audit"))
	t.Cleanup(func() {
		for _, rx := range []*framework.Receiver{billingRx, auditRx} {
			for _, p := range rx.Refusals() {
				t.Errorf("a delivery did not verify: %s", p)
			}
		}
	})

	producer := w.producerToken()
	operator := w.startConsole("console-operator", w.identity("ops", "herald-operator"))
	publisher := w.startConsole("console-publisher", w.identity("pub", "herald-publisher"))

	// invoice.paid without an amount: billing gets it, audit fails it, and the
	// big-invoices filter cannot evaluate on it.
	failed := w.publish(producer, "evt_console_1", "invoice.paid", `{"invoice":"INV-1"}`, 2)
	w.publish(producer, "evt_console_legacy", "legacy.ping", `{}`, 1)

	t.Run("the pages load as the operator", func(t *testing.T) {
		b.do("open the console", chromedp.Navigate(operator), chromedp.WaitVisible(chromedp.CSS("h1")))
		if got := b.pageText(); !strings.Contains(got, "Namespaces") || !strings.Contains(got, ns) {
			t.Fatalf("the index lists the operator's namespace %s (the kubeconfig context's; it may not list namespaces):\n%s", ns, got)
		}
		b.shot("index")
		b.do("open the namespace", chromedp.Click(chromedp.CSS(`a[href="/ns/shop"]`)), chromedp.WaitVisible(chromedp.CSS("table.endpoints")))
		b.waitText("#ep-legacy", "Disabled", 30*time.Second)
		b.waitText("#ep-legacy", "Gone", 5*time.Second)
		b.waitText("#ep-billing", "Delivering", 30*time.Second)
		b.waitText("#chart figcaption", "delivered", 5*time.Second)
		// Subscriptions are not live: the dispatcher reports the filter's failure a moment
		// after the event, and a reload shows it.
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(b.pageText(), "FilterFailed") && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			b.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("table.endpoints")))
		}
		b.waitText("#live-status", "Live updates: on", 10*time.Second)
		page := b.pageText()
		for _, want := range []string{"big-invoices", "FilterFailed", "no such key: amount", "event.data.amount > 1000"} {
			if !strings.Contains(page, want) {
				t.Errorf("the namespace page lacks %q:\n%s", want, page)
			}
		}
		b.shot("namespace")
	})

	// live is delivered to billing and, as audit's receiver is overloaded, dead-lettered
	// at audit.
	var live string
	t.Run("live: a delivery shows on the open page without a reload", func(t *testing.T) {
		b.do("mark the page", chromedp.Evaluate[chromedp.Void]("window.heraldMark = 'same page'"))
		before := eval[string](b, `document.querySelector("#ep-billing td[data-label=Delivered]").innerText`)
		live = w.publish(producer, "evt_console_live", "invoice.created", `{"invoice":"INV-2"}`, 2)
		deadline := time.Now().Add(30 * time.Second)
		for eval[string](b, `document.querySelector("#ep-billing td[data-label=Delivered]").innerText`) == before {
			if time.Now().After(deadline) {
				t.Fatalf("billing's Delivered count stayed %s on the open page:\n%s", before, b.pageText())
			}
			time.Sleep(200 * time.Millisecond)
		}
		if mark := eval[string](b, "String(window.heraldMark)"); mark != "same page" {
			t.Errorf("the page was reloaded (mark %q): live updates must not reload", mark)
		}
	})

	t.Run("an ordered endpoint blocked by an event: the page names it and leads to it", func(t *testing.T) {
		// orders delivers in order to a receiver that fails, with its next attempt an hour
		// away: the first event blocks the second.
		down := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusServiceUnavailable) }))
		t.Cleanup(down.Close)
		w.endpoint(&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "orders"}, Spec: heraldv1.WebhookEndpointSpec{
			URL: down.URL + "/hooks/orders", Ordering: heraldv1.OrderingOrdered, Retry: schedule("1h"), AutoDisable: failures(100)}})
		w.subscription("orders", "orders", "", "order.*")
		head := w.publish(producer, "evt_console_order_1", "order.created", `{"order":"O-1"}`, 1)
		w.publish(producer, "evt_console_order_2", "order.paid", `{"order":"O-1"}`, 1)
		b.do("open the namespace", chromedp.Navigate(strings.Split(operator, "?")[0]+"ns/shop"), chromedp.WaitVisible(chromedp.CSS("table.endpoints")))
		b.waitText("#ep-orders", "Blocked", 30*time.Second)
		b.waitText("#ep-orders", "blocked by "+head, 5*time.Second)
		b.do("follow the blocking event", chromedp.Click(chromedp.CSS(`#ep-orders a[href="/ns/shop/events/`+head+`"]`)), chromedp.WaitVisible(chromedp.ID("ev-deliveries")))
		b.waitText("#ev-deliveries", "orders:", 10*time.Second)
		if page := b.pageText(); !strings.Contains(page, "HTTP 503") {
			t.Errorf("the blocking event's page shows its failed attempt at orders:\n%s", page)
		}
	})

	t.Run("a failed event is found by its id, replayed from the keyboard, and delivered", func(t *testing.T) {
		b.do("find the event", chromedp.Navigate(strings.Split(operator, "?")[0]), chromedp.WaitVisible(chromedp.ID("find-ns")),
			chromedp.SetValue(chromedp.ID("find-ns"), ns), chromedp.SetValue(chromedp.ID("find-event"), failed),
			chromedp.Submit(chromedp.ID("find-event")), chromedp.WaitVisible(chromedp.ID("ev-deliveries")))
		b.waitText("#ev-deliveries", "billing: ✓ Delivered", 30*time.Second)
		// audit's two attempts fail a second apart, then the delivery is dead-lettered:
		// the open page shows it as it happens.
		b.waitText("#ev-deliveries", "audit: ✗ Dead-lettered", 60*time.Second)
		if page := b.pageText(); !strings.Contains(page, "HTTP 503") || !strings.Contains(page, "response bodies") {
			t.Errorf("the event page shows each attempt's answer, and that the operator may not read audit's kept response bodies (herald-response-reader):\n%s", page)
		}
		if !strings.Contains(b.html(), "--clusterrole=herald-response-reader") {
			t.Errorf("the withheld bodies come with the grant the CLI prints")
		}
		b.shot("event-dead-lettered")

		auditRx.SetRespond(nil)
		// The keyboard alone: Tab from the top reaches the skip link first, then the
		// action; Enter follows it, and the confirmation's button has the focus.
		b.do("focus the top", chromedp.Evaluate[chromedp.Void]("document.activeElement && document.activeElement.blur(); window.scrollTo(0,0)"))
		b.do("tab", chromedp.KeyEvent(kb.Tab))
		if got := eval[string](b, "document.activeElement.innerText"); got != "Skip to content" {
			t.Errorf("the first Tab reaches %q, want the skip link", got)
		}
		reached := false
		for range 60 {
			b.do("tab", chromedp.KeyEvent(kb.Tab))
			if strings.HasPrefix(eval[string](b, "document.activeElement.innerText || ''"), "Replay to audit") {
				reached = true
				break
			}
		}
		if !reached {
			t.Fatalf("Tab never reached the replay of audit's dead letter:\n%s", b.pageText())
		}
		b.do("follow the link", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS("form.confirm button")))
		confirm := b.pageText()
		if !strings.Contains(confirm, "Replay the dead letter of event "+failed+" to WebhookEndpoint shop/audit?") ||
			!strings.Contains(confirm, "herald dlq replay audit -n shop --event-id "+failed) {
			t.Errorf("the confirmation says what will happen and the CLI's equivalent:\n%s", confirm)
		}
		b.shot("confirm-replay")
		if got := eval[string](b, "document.activeElement.innerText"); got != "Replay the dead letter" {
			t.Errorf("the confirmation's button should have the focus, %q has it", got)
		}
		b.do("confirm", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.ID("flash")))
		b.waitText("#flash", "Replayed 1 dead letter(s) of WebhookEndpoint shop/audit", 5*time.Second)
		b.waitText("#ev-deliveries", "audit: ✓ Delivered", 60*time.Second)
		if page := b.pageText(); !strings.Contains(page, "(replay 1)") {
			t.Errorf("the event page shows the replayed attempt:\n%s", page)
		}
		if _, ok := auditRx.Delivered(failed); !ok {
			t.Errorf("audit's receiver never accepted %s after the replay", failed)
		}
		b.shot("event-replayed")
	})

	t.Run("the endpoint page: attempts, dead letters, state, a verify snippet", func(t *testing.T) {
		b.do("open audit", chromedp.Click(chromedp.CSS(`#ev-deliveries a[href="/ns/shop/endpoints/audit"]`)), chromedp.WaitVisible(chromedp.ID("ep-attempts")))
		page := b.pageText()
		for _, want := range []string{"TimestampedPrefixedHex", `verify.TimestampedPrefixedHex(secret, "X-Audit", r.Header, body)`,
			"kubectl get secret audit-signing -n shop", failed, "(replay 1)", "Dead letters"} {
			if !strings.Contains(page, want) {
				t.Errorf("audit's page lacks %q:\n%s", want, page)
			}
		}
		if dead := eval[string](b, `document.getElementById("ep-deadletters").innerText`); strings.Contains(dead, failed) {
			t.Errorf("the replayed event %s is still among audit's dead letters:\n%s", failed, dead)
		}
		b.shot("endpoint")
		// A phone's width: every table a list of labelled cards, nothing wider than the
		// screen.
		b.do("narrow", chromedp.EmulateViewport(390, 844), chromedp.Navigate(strings.Split(operator, "?")[0]+"ns/shop"), chromedp.WaitVisible(chromedp.CSS("table.endpoints")))
		if over := eval[bool](b, "document.documentElement.scrollWidth > window.innerWidth + 1"); over {
			t.Errorf("at 390 px the namespace page is wider than the screen (%v px)", eval[float64](b, "document.documentElement.scrollWidth"))
		}
		b.shot("namespace-narrow")
		// Without colour: the states are words and symbols, failed attempts hatched.
		b.do("wide again", chromedp.EmulateViewport(1280, 900), chromedp.Evaluate[chromedp.Void]("document.documentElement.style.filter = 'grayscale(1)'"))
		b.shot("namespace-grayscale")

		var key string
		w.Eventually(t, 60*time.Second, "ledger's public key in its status", framework.Bool(func() bool {
			var ep heraldv1.WebhookEndpoint
			err := w.Cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ledger"}, &ep)
			key = ep.Status.PublicKey
			return err == nil && key != ""
		}))
		b.do("open ledger", chromedp.Navigate(strings.Split(operator, "?")[0]+"ns/shop/endpoints/ledger"), chromedp.WaitVisible(chromedp.ID("verify-h")))
		page = b.pageText()
		for _, want := range []string{"StandardWebhooksEd25519", "Public key: " + key, `const publicKey = "` + key + `"`,
			"verify.StandardWebhooksEd25519(publicKey, r.Header, body)", "herald endpoint public-key ledger -n shop"} {
			if !strings.Contains(page, want) {
				t.Errorf("ledger's page lacks %q:\n%s", want, page)
			}
		}
	})

	t.Run("actions: re-enable, resend, replay dead letters by type and by time range (its progress); each after a confirmation, and refused to the publisher", func(t *testing.T) {
		base := strings.Split(operator, "?")[0]
		b.do("open legacy", chromedp.Navigate(base+"ns/shop/endpoints/legacy"), chromedp.WaitVisible(chromedp.ID("ep-status")))
		b.waitText("#ep-status", "Disabled", 5*time.Second)
		b.do("re-enable…", chromedp.Click(chromedp.CSS(`#ep-status a[href$="/confirm/enable"]`)), chromedp.WaitVisible(chromedp.CSS("form.confirm button")))
		if page := b.pageText(); !strings.Contains(page, "Re-enable WebhookEndpoint shop/legacy?") || !strings.Contains(page, "herald endpoint enable legacy -n shop") {
			t.Errorf("the confirmation says what will happen and the CLI's equivalent:\n%s", page)
		}
		// The receiver is back, so legacy stays enabled (its held delivery is retried on
		// its schedule).
		legacyBack.Store(true)
		b.do("confirm", chromedp.Click(chromedp.CSS("form.confirm button")), chromedp.WaitVisible(chromedp.ID("flash")))
		b.waitText("#flash", "Re-enabled WebhookEndpoint shop/legacy", 5*time.Second)
		w.Eventually(t, 30*time.Second, "legacy enabled on the API server", framework.Bool(func() bool {
			var ep heraldv1.WebhookEndpoint
			err := w.Cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "legacy"}, &ep)
			return err == nil && !meta.IsStatusConditionTrue(ep.Status.Conditions, heraldv1.ConditionDisabled)
		}))
		// The open page shows it without a reload (the watch of the endpoint).
		b.waitText("#ep-status", "Disabled: False", 30*time.Second)

		// billing has the event already; a resend delivers it again, with its id.
		b.do("open the event", chromedp.Navigate(base+"ns/shop/events/"+failed), chromedp.WaitVisible(chromedp.ID("ev-deliveries")))
		b.do("resend…", chromedp.Click(chromedp.CSS(`#ev-deliveries a[href^="/ns/shop/endpoints/billing/confirm/resend"]`)), chromedp.WaitVisible(chromedp.CSS("form.confirm button")))
		if page := b.pageText(); !strings.Contains(page, "Resend event "+failed+" to WebhookEndpoint shop/billing?") {
			t.Errorf("the resend's confirmation:\n%s", page)
		}
		b.do("confirm", chromedp.Click(chromedp.CSS("form.confirm button")), chromedp.WaitVisible(chromedp.ID("flash")))
		b.waitText("#flash", "1 selected", 5*time.Second)
		w.Eventually(t, 60*time.Second, "billing's receiver gets "+failed+" a second time", framework.Bool(func() bool {
			return len(billingRx.Attempts(failed)) >= 2
		}))

		// Dead letters replayed by type, then by time range in the background, with its
		// progress on the endpoint's page: audit fails three more events (and live before).
		auditRx.SetRespond(func(framework.Request) (int, string) { return http.StatusServiceUnavailable, "overloaded, try later" })
		created1 := w.publish(producer, "evt_console_c1", "invoice.created", `{"invoice":"INV-3"}`, 2)
		created2 := w.publish(producer, "evt_console_c2", "invoice.created", `{"invoice":"INV-4"}`, 2)
		voided := w.publish(producer, "evt_console_v1", "invoice.voided", `{"invoice":"INV-3"}`, 2)
		b.do("open audit", chromedp.Navigate(base+"ns/shop/endpoints/audit"), chromedp.WaitVisible(chromedp.ID("ep-deadletters")))
		for _, id := range []string{live, created1, created2, voided} {
			// The open page's dead letters follow as they happen.
			b.waitText("#ep-deadletters", id, 60*time.Second)
		}
		auditRx.SetRespond(nil)
		b.do("replay by type…", chromedp.SetValue(chromedp.ID("dl-type"), "invoice.voided"),
			chromedp.Click(chromedp.CSS(`form[action$="/confirm/replay-type"] button`)), chromedp.WaitVisible(chromedp.CSS("form.confirm button")))
		if page := b.pageText(); !strings.Contains(page, "herald dlq replay audit -n shop --event-type invoice.voided") {
			t.Errorf("the confirmation of a replay by type shows the CLI's equivalent:\n%s", page)
		}
		b.do("confirm", chromedp.Click(chromedp.CSS("form.confirm button")), chromedp.WaitVisible(chromedp.ID("flash")))
		b.waitText("#flash", "Replayed 1 dead letter(s) of WebhookEndpoint shop/audit", 5*time.Second)
		// The replayed dead letter leaves the list once delivered (the page follows).
		w.Eventually(t, 60*time.Second, voided+" delivered and gone from audit's dead letters", framework.Bool(func() bool {
			_, ok := auditRx.Delivered(voided)
			return ok && !strings.Contains(eval[string](b, `document.getElementById("ep-deadletters").innerText`), voided)
		}))
		b.do("replay a time range…", chromedp.SetValue(chromedp.ID("dl-since"), "1h"),
			chromedp.Click(chromedp.CSS(`form[action$="/confirm/replay-range"] button`)), chromedp.WaitVisible(chromedp.CSS("form.confirm button")))
		b.do("confirm", chromedp.Click(chromedp.CSS("form.confirm button")), chromedp.WaitVisible(chromedp.ID("flash")))
		b.waitText("#flash", "3 selected", 5*time.Second)
		// The replay's progress shows on the open page, to its end.
		b.waitText("#ep-status", "3 re-sent, 0 remaining of 3", 60*time.Second)
		b.shot("endpoint-replayed-range")
		// Re-sent is queued again; delivered follows.
		for _, id := range []string{live, created1, created2, voided} {
			w.Eventually(t, 60*time.Second, "audit's receiver accepts "+id+" after the replays", framework.Bool(func() bool {
				_, ok := auditRx.Delivered(id)
				return ok
			}))
		}

		// The publisher may open a confirmation (it changes nothing) but the dispatcher
		// refuses the action, and the page says which grant it takes.
		pbase := strings.Split(publisher, "?")[0]
		b.do("open as the publisher", chromedp.Navigate(publisher), chromedp.WaitVisible(chromedp.CSS("h1")))
		b.do("a confirmation as the publisher", chromedp.Navigate(pbase+"ns/shop/endpoints/billing/confirm/enable?return=/ns/shop"), chromedp.WaitVisible(chromedp.CSS("form.confirm button")))
		b.do("confirm", chromedp.Click(chromedp.CSS("form.confirm button")), chromedp.WaitVisible(chromedp.ID("flash")))
		if flash := eval[string](b, `document.getElementById("flash").innerText`); !strings.Contains(flash, "The action did not happen") ||
			!strings.Contains(flash, "--clusterrole=herald-operator --serviceaccount=shop:pub") {
			t.Errorf("the publisher's re-enable is refused with the grant the CLI prints:\n%s", flash)
		}
		b.shot("publisher-action-refused")
	})

	t.Run("a user bound only to herald-publisher sees no endpoint data", func(t *testing.T) {
		// Whatever the page shows that the publisher did not type into the address.
		secrets := []string{"billing", "audit", "legacy", "ledger", "orders", billingRx.URL(), gone.URL, failed, "big-invoices", "Delivered", "dlv_"}
		check := func(where string) {
			t.Helper()
			page, html := b.pageText(), b.html()
			typed := eval[string](b, "decodeURIComponent(location.pathname)")
			for _, s := range secrets {
				if !strings.Contains(typed, s) && strings.Contains(html, s) {
					t.Errorf("%s shows the publisher %q:\n%s", where, s, page)
				}
			}
		}
		b.do("open as the publisher", chromedp.Navigate(publisher), chromedp.WaitVisible(chromedp.CSS("h1")))
		b.do("open the namespace", chromedp.Click(chromedp.CSS(`a[href="/ns/shop"]`)), chromedp.WaitVisible(chromedp.CSS(".refusal")))
		check("the namespace page")
		page := b.pageText()
		if !strings.Contains(page, "Not shown") || !strings.Contains(page, "kubectl create rolebinding pub-herald-operator -n shop --clusterrole=herald-operator --serviceaccount=shop:pub") {
			t.Errorf("the namespace page refuses with the grant the CLI prints:\n%s", page)
		}
		b.shot("publisher-refused")
		base := strings.Split(publisher, "?")[0]
		b.do("an endpoint's page", chromedp.Navigate(base+"ns/shop/endpoints/billing"), chromedp.WaitVisible(chromedp.CSS(".refusal")))
		check("billing's page")
		b.do("an event's page", chromedp.Navigate(base+"ns/shop/events/"+failed), chromedp.WaitVisible(chromedp.CSS(".refusal")))
		check("the event's page")
		if page := b.pageText(); !strings.Contains(page, "may not get webhookendpoints") || !strings.Contains(page, "--clusterrole=herald-operator") {
			t.Errorf("the event page shows the dispatcher's refusal and the grant:\n%s", page)
		}
		// The stream of a page the publisher may not read sends no endpoint either.
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 5 * time.Second}
		if resp, err := hc.Get(publisher); err == nil {
			resp.Body.Close()
		}
		resp, err := hc.Get(base + "live/ns/shop")
		if err != nil && !strings.Contains(err.Error(), "Timeout") {
			t.Fatal(err)
		}
		if resp != nil {
			sc := bufio.NewScanner(resp.Body)
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) && sc.Scan() {
				if line := sc.Text(); strings.Contains(line, "billing") || strings.Contains(line, "event: patch") {
					t.Errorf("the publisher's stream sent %q", line)
				}
			}
			resp.Body.Close()
		}
	})

	t.Run("without --server: a port-forward to the dispatcher's Service, else the default address and the advice", func(t *testing.T) {
		// A Service like the workload's (its port 8080 leads to the container port named
		// ingest) and a Pod behind it. envtest runs no kubelet: the console finds the Pod
		// through the API server and asks it for the forward, which the API server cannot
		// make; the console says why and goes on with the CLI's default address.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := w.Cluster.Client
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dispatcher-pf"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "dispatcher-pf"},
			Ports:    []corev1.ServicePort{{Name: "ingest", Port: 8080, TargetPort: intstr.FromString("ingest")}}}}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dispatcher-pf-0", Labels: map[string]string{"app": "dispatcher-pf"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "dispatcher", Image: "herald:test",
				Ports: []corev1.ContainerPort{{Name: "ingest", ContainerPort: 8080}}}}}}
		for _, o := range []client.Object{svc, pod} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		start := func(name string) string {
			t.Helper()
			p := w.Start(framework.StartInput{Name: name, Binary: w.HeraldBin, Env: []string{"HERALD_URL="},
				Args: []string{"console", "--kubeconfig", w.Cluster.Kubeconfig, "-n", ns, "--open=false", "--port-forward", ns + "/dispatcher-pf"}})
			w.Eventually(t, 30*time.Second, name+" prints its address", framework.Bool(func() bool { return consoleURL.MatchString(p.Output()) }))
			return p.Output()
		}
		out := start("console-no-pod")
		for _, want := range []string{"No port-forward to the dispatcher (no running, ready Pod behind Service shop/dispatcher-pf); using http://127.0.0.1:8080",
			"kubectl port-forward -n herald-system svc/herald-dispatcher 8080", "dispatcher http://127.0.0.1:8080"} {
			if !strings.Contains(out, want) {
				t.Errorf("with no ready Pod behind the Service, the console says %q; it printed:\n%s", want, out)
			}
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if err := c.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		out = start("console-forward")
		if !strings.Contains(out, "No port-forward to the dispatcher (forwarding to Pod shop/dispatcher-pf-0: error upgrading connection") {
			t.Errorf("with a ready Pod, the console asks the API server to forward to it, which cannot without a kubelet, and says so; it printed:\n%s", out)
		}
	})

	t.Run("the console refuses other origins and a missing secret", func(t *testing.T) {
		base := strings.Split(operator, "?")[0]
		resp, err := http.Get(base + "ns/shop")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("without the address's secret: %s, want 401", resp.Status)
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, operator, nil)
		req.Host = "evil.example:80"
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("for another host name (DNS rebinding): %s, want 421", resp.Status)
		}
		// A form posted by another site, or without the page's token, acts on nothing,
		// even from a browser holding the cookie.
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		if resp, err := hc.Get(operator); err == nil {
			resp.Body.Close()
		}
		resp, err = hc.Get(base + "ns/shop/endpoints/legacy/confirm/enable")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(raw)
		if m == nil {
			t.Fatalf("the confirmation page has no form token:\n%s", raw)
		}
		for why, c := range map[string]struct {
			form string
			set  func(*http.Request)
		}{
			"without the page's token": {"return=/ns/shop", func(*http.Request) {}},
			"from another site":        {"csrf=" + string(m[1]), func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }},
			"from another origin":      {"csrf=" + string(m[1]), func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }},
		} {
			req, _ := http.NewRequest(http.MethodPost, base+"ns/shop/endpoints/legacy/do/enable", strings.NewReader(c.form))
			set := c.set
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			set(req)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("a form %s: %s, want 403", why, resp.Status)
			}
		}
		if page := b.pageText(); strings.Contains(page, "Re-enabled") {
			t.Errorf("a refused form re-enabled legacy")
		}
	})
}
