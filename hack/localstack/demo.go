package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herald-dev/herald/dispatcher/watch"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/pkg/wire"
)

const fieldOwner = "herald-local-stack"

type publishedEvent struct {
	Type     string
	Result   wire.PublishResult
	Expected []string // endpoints that should receive it
}

// demo puts the samples in front of the demo receiver and sends events through them.
func (s *stack) demo(ctx context.Context) error {
	ns := s.cfg.namespace
	samples, err := s.loadSamples()
	if err != nil {
		return err
	}
	var suspended []*unstructured.Unstructured
	for _, u := range samples {
		u.SetNamespace(ns)
		if u.GetKind() == "WebhookEndpoint" {
			if err := unstructured.SetNestedField(u.Object, s.receiver.URL(ns, u.GetName()), "spec", "url"); err != nil {
				return err
			}
			if v, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend"); v {
				suspended = append(suspended, u)
			}
		}
		if err := s.apply(ctx, u); err != nil {
			return fmt.Errorf("applying the sample %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	s.con.Stackf("applied %d objects from config/samples (and its catalog) into namespace %s, each endpoint's url set to %s/%s/<endpoint>",
		len(samples), ns, s.receiver.base, ns)
	if err := s.ensureHeaderSecrets(ctx, samples); err != nil {
		return err
	}
	// The endpoint an earlier run disabled on purpose would never be Ready again.
	if err := s.deleteFlaky(ctx); err != nil {
		return err
	}
	if err := s.waitSettled(ctx); err != nil {
		return err
	}

	events, err := s.plannedEvents(ctx)
	if err != nil {
		return err
	}
	s.con.Stackf("publishing %d events with %s publish as the producer (KUBECONFIG=%s)", len(events), s.rel(s.cfg.herald), s.rel(s.producer.kubeconfig))
	for i := range events {
		if err := s.publish(ctx, &events[i]); err != nil {
			return err
		}
	}

	held := map[string]bool{}
	for _, u := range suspended {
		held[u.GetName()] = true
	}
	if err := s.waitDeliveries(ctx, events, func(ep string) bool { return !held[ep] }); err != nil {
		return err
	}
	for _, ev := range events {
		if slices.Contains(ev.Expected, "billing") && !held["billing"] {
			s.demoEvent = ev.Result.ID
			break
		}
	}
	// A suspended sample shows that held deliveries are kept: they arrive once the
	// endpoint is resumed, here with the command a person would type.
	for _, u := range suspended {
		held := "it held nothing"
		if n := countFor(events, u.GetName()); n > 0 {
			held = plural(n, "its delivery was", "its %d deliveries were") + " held, not lost"
		}
		patch := []string{"patch", "whe", u.GetName(), "--type", "merge", "-p", `{"spec":{"suspend":false}}`}
		if o, _, _ := unstructured.NestedString(u.Object, "spec", "ordering"); o == "Ordered" {
			held += "; it is ordering: Ordered, so they go one at a time in the order published"
		}
		s.con.Stackf("%s is suspended in its sample (spec.suspend: true) and %s; resuming it:", u.GetName(), held)
		s.con.Stackf("kubectl patch whe %s --type merge -p '{\"spec\":{\"suspend\":false}}'", u.GetName())
		if err := s.runKubectl(ctx, patch...); err != nil {
			return err
		}
	}
	if len(suspended) > 0 {
		if err := s.waitDeliveries(ctx, events, func(string) bool { return true }); err != nil {
			return err
		}
	}
	if err := s.catalogDemo(ctx); err != nil {
		return err
	}
	return s.waitReported(ctx, events)
}

// waitReported waits until the dispatcher has written the status of every endpoint the
// demo delivered to (it writes each at most every --status-interval, 5 s), so that the
// commands printed next show counters and states rather than a status not yet written.
func (s *stack) waitReported(ctx context.Context, events []publishedEvent) error {
	names := map[string]bool{}
	for _, e := range events {
		for _, ep := range e.Expected {
			names[ep] = true
		}
	}
	start := time.Now()
	err := s.waitFor(ctx, "the dispatcher to report on the endpoints' status", 30*time.Second, func() (bool, error) {
		var eps heraldv1.WebhookEndpointList
		if err := s.client.List(ctx, &eps, client.InNamespace(s.cfg.namespace)); err != nil {
			return false, err
		}
		for _, e := range eps.Items {
			if names[e.Name] && meta.FindStatusCondition(e.Status.Conditions, heraldv1.ConditionDelivering) == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		// Not fatal: the status shows up a little later, and the demo goes on.
		s.con.Stackf("%v; going on", err)
		return nil
	}
	if err == nil {
		s.con.Stackf("the dispatcher wrote the delivery status of %s (kubectl get whe shows it) %s after the last delivery",
			plural(len(names), "the endpoint", "the %d endpoints"), time.Since(start).Round(100*time.Millisecond))
	}
	return err
}

// loadSamples reads every object in config/samples and its catalog
// (config/samples/catalog) except the kustomizations.
func (s *stack) loadSamples() ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(s.cfg.root, "config", "samples")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	catalog, err := filepath.Glob(filepath.Join(dir, "catalog", "*.yaml"))
	if err != nil {
		return nil, err
	}
	files = append(files, catalog...)
	sort.Strings(files)
	var out []*unstructured.Unstructured
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", s.rel(f), err)
			}
			if len(obj) == 0 {
				continue
			}
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no samples in %s", s.rel(dir))
	}
	return out, nil
}

// apply server-side applies obj as the local stack; re-running converges. obj is not
// changed: Apply writes the server's answer into what it is given, and an object
// carrying managedFields cannot be applied again.
func (s *stack) apply(ctx context.Context, obj client.Object) error {
	var u *unstructured.Unstructured
	if in, ok := obj.(*unstructured.Unstructured); ok {
		u = in.DeepCopy()
	} else {
		m, err := runtimeToUnstructured(obj)
		if err != nil {
			return err
		}
		u = m
	}
	return s.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership)
}

func runtimeToUnstructured(obj client.Object) (*unstructured.Unstructured, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	// Server-side apply refuses status and the zero creationTimestamp of typed objects.
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}

// ensureHeaderSecrets creates the Secrets that samples take static header values from,
// when missing, with a demo value: the dispatcher holds an endpoint's deliveries while a
// header's Secret is missing.
func (s *stack) ensureHeaderSecrets(ctx context.Context, samples []*unstructured.Unstructured) error {
	for _, u := range samples {
		if u.GetKind() != "WebhookEndpoint" {
			continue
		}
		headers, _, _ := unstructured.NestedSlice(u.Object, "spec", "headers")
		for _, h := range headers {
			m, _ := h.(map[string]any)
			name, _, _ := unstructured.NestedString(m, "valueFrom", "name")
			key, _, _ := unstructured.NestedString(m, "valueFrom", "key")
			if name == "" {
				continue
			}
			if key == "" {
				key = heraldv1.DefaultSecretKey
			}
			secret := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: u.GetNamespace()},
				StringData: map[string]string{key: "Bearer local-demo-" + name},
			}
			err := s.client.Create(ctx, secret)
			switch {
			case err == nil:
				s.con.Stackf("created Secret %s (key %s) for %s's header %v, which the sample expects to exist", name, key, u.GetName(), m["name"])
			case !apierrors.IsAlreadyExists(err):
				return fmt.Errorf("creating Secret %s: %w", name, err)
			}
		}
	}
	return nil
}

// waitSettled waits until the manager has looked at every endpoint and subscription of
// the current generation, and prints where each stands.
func (s *stack) waitSettled(ctx context.Context) error {
	ns := s.cfg.namespace
	var eps heraldv1.WebhookEndpointList
	var subs heraldv1.WebhookSubscriptionList
	settled := func(gen, observed int64, conds []metav1.Condition) bool {
		c := meta.FindStatusCondition(conds, heraldv1.ConditionReady)
		return c != nil && observed == gen && (c.Status == metav1.ConditionTrue || c.Reason == "Suspended")
	}
	err := s.waitFor(ctx, "the samples to be Ready", time.Minute, func() (bool, error) {
		if err := s.client.List(ctx, &eps, client.InNamespace(ns)); err != nil {
			return false, err
		}
		if err := s.client.List(ctx, &subs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, e := range eps.Items {
			if !settled(e.Generation, e.Status.ObservedGeneration, e.Status.Conditions) {
				return false, nil
			}
		}
		for _, sub := range subs.Items {
			if !settled(sub.Generation, sub.Status.ObservedGeneration, sub.Status.Conditions) {
				return false, nil
			}
		}
		return true, nil
	})
	for _, e := range eps.Items {
		s.con.Line("        " + readyLine("WebhookEndpoint", e.Name, string(e.Spec.SignatureStyle()), e.Status.Conditions))
	}
	for _, sub := range subs.Items {
		s.con.Line("        " + readyLine("WebhookSubscription", sub.Name, strings.Join(sub.Spec.EventTypes, ","), sub.Status.Conditions))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		// Not fatal: the lines above say which is not Ready and why, and the demo goes
		// on so the rest can be looked at.
		s.con.Stackf("not everything is Ready after a minute (see above); going on")
		return nil
	}
	return err
}

func readyLine(kind, name, detail string, conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, heraldv1.ConditionReady)
	state := "Ready=?"
	if c != nil {
		state = fmt.Sprintf("Ready=%s %s", c.Status, c.Reason)
		if c.Status != metav1.ConditionTrue {
			state += ": " + c.Message
		}
	}
	return fmt.Sprintf("%-19s %-22s %-30s %s", kind, name, detail, state)
}

// plannedEvents picks one event type per subscription (a glob's * becomes "created")
// and works out, with the dispatcher's own routing code, which endpoints each reaches.
func (s *stack) plannedEvents(ctx context.Context) ([]publishedEvent, error) {
	ns := s.cfg.namespace
	var subs heraldv1.WebhookSubscriptionList
	if err := s.client.List(ctx, &subs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var eps heraldv1.WebhookEndpointList
	if err := s.client.List(ctx, &eps, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, e := range eps.Items {
		known[e.Name] = true
	}
	table := router.NewTable()
	var types []string
	for _, sub := range subs.Items {
		rs, err := watch.Route(&sub)
		if err != nil {
			continue // routes nothing in the dispatcher either
		}
		table.Set(ns, rs)
		for _, p := range sub.Spec.EventTypes {
			if p == "*" || heraldv1.IsOperationalEventType(p) {
				continue // Herald's own types are Herald's to send
			}
			t := strings.ReplaceAll(p, "*", "created")
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
			break
		}
	}
	if len(types) == 0 {
		types = []string{"demo.created"}
	}
	sort.Strings(types)
	events := make([]publishedEvent, len(types))
	for i, t := range types {
		ev := router.Event{Type: t, Data: demoData(t), CreatedAt: time.Now()}
		matched := table.Route(nil, ns, &ev, nil)
		events[i] = publishedEvent{Type: t}
		for _, m := range matched {
			if known[m] {
				events[i].Expected = append(events[i].Expected, m)
			}
		}
	}
	return events, nil
}

func demoData(eventType string) json.RawMessage {
	word, _, _ := strings.Cut(eventType, ".")
	ref := strings.ToUpper(word[:min(3, len(word))]) + "-1001"
	return json.RawMessage(fmt.Sprintf(`{"reference":%q,"amount":1500,"currency":"EUR","customer":"cus_demo_42"}`, ref))
}

// publish sends one event with `herald publish` as the producer, the command and the
// credentials the closing hints give a person.
func (s *stack) publish(ctx context.Context, ev *publishedEvent) error {
	args := []string{"publish", "--server", s.ingestURL,
		"--type", ev.Type, "--data", string(demoData(ev.Type)), "-o", "json"}
	cmd := exec.CommandContext(ctx, s.cfg.herald, args...)
	// A HERALD_TOKEN of the developer's would take precedence over the kubeconfig.
	cmd.Env = append(withoutEnv(os.Environ(), "HERALD_TOKEN", "HERALD_URL", "HERALD_CA_FILE", "KUBECONFIG"), "KUBECONFIG="+s.producer.kubeconfig, "HERALD_CA_FILE="+s.caFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("herald publish --type %s: %v\n%s", ev.Type, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), &ev.Result); err != nil {
		return fmt.Errorf("herald publish printed %q: %w", stdout.String(), err)
	}
	to := strings.Join(ev.Expected, ", ")
	if to == "" {
		to = "no endpoint"
	}
	s.con.Stackf("  published %-22s %s  matched %d (expected: %s)", ev.Type, ev.Result.ID, ev.Result.Matched, to)
	if ev.Result.Matched != len(ev.Expected) {
		s.con.Stackf("  the dispatcher matched %d endpoints, not %d: it may not have seen every subscription yet", ev.Result.Matched, len(ev.Expected))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf(many, n)
}

func countFor(events []publishedEvent, endpoint string) int {
	n := 0
	for _, e := range events {
		if slices.Contains(e.Expected, endpoint) {
			n++
		}
	}
	return n
}

// waitDeliveries waits until the receiver has verified every expected delivery to the
// endpoints include selects, and reports the time of the first one.
func (s *stack) waitDeliveries(ctx context.Context, events []publishedEvent, include func(string) bool) error {
	want := map[[2]string]bool{}
	for _, e := range events {
		for _, ep := range e.Expected {
			if include(ep) {
				want[[2]string{e.Result.ID, ep}] = true
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	deadline := time.After(45 * time.Second)
	for {
		got, changed := s.receiver.snapshot()
		missing := len(want)
		for k := range want {
			for _, d := range got {
				if d.verified && d.eventID == k[0] && d.endpoint == k[1] {
					missing--
					break
				}
			}
		}
		if len(got) > 0 && s.firstDelivery.IsZero() {
			s.firstDelivery = got[0].at
		}
		if missing == 0 {
			s.con.Stackf("all %d deliveries arrived, signatures verified; the first one %s after %s",
				len(want), s.firstDelivery.Sub(s.start).Round(100*time.Millisecond), s.startedBy)
			return nil
		}
		if err := s.childFailure(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(time.Second):
		case <-deadline:
			s.con.Stackf("%d of %d expected deliveries did not arrive within 45s: see kubectl describe whe <name> for the last attempt", missing, len(want))
			return nil
		}
	}
}
