package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// The demo's part about the event catalog and Herald's own events: the samples'
// namespace declares its event types (config/samples/catalog, applied with the samples),
// so the demo shows one type and its schema, a publish the schema refuses with 422, and
// an operational event: an endpoint that answers 410 Gone is disabled at once, and
// herald.endpoint.disabled arrives, signed, at billing, which subscribes to herald.*.

// answerParam, on a demo endpoint's URL, makes the receiver answer every delivery with
// that status (the flaky endpoint: 410).
const answerParam = "answer"

// flakyPrefix names the demo's endpoint that answers 410; each run creates a fresh one
// (an endpoint disabled by an earlier run stays disabled: it would send no news).
const flakyPrefix = "flaky-"

func (s *stack) catalogDemo(ctx context.Context) error {
	ns := s.cfg.namespace
	var et heraldv1.WebhookEventType
	if err := s.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "invoice-paid"}, &et); err != nil {
		return fmt.Errorf("reading the sample WebhookEventType invoice-paid: %w", err)
	}
	var types heraldv1.WebhookEventTypeList
	if err := s.client.List(ctx, &types, client.InNamespace(ns)); err != nil {
		return err
	}
	s.con.Stackf("namespace %s declares %d event types (kubectl get whet); the dispatcher accepts only those there, with data that validates. %s's schema:",
		ns, len(types.Items), et.Spec.Type)
	for _, l := range strings.Split(strings.TrimSpace(et.Spec.Schema), "\n") {
		s.con.Line("        " + l)
	}

	// A publish the schema refuses, as the producer.
	out, err := s.heraldPublish(ctx, et.Spec.Type, `{"amount": 0}`)
	if err == nil {
		return fmt.Errorf("herald publish --type %s --data '{\"amount\": 0}' was accepted; the catalog should refuse it:\n%s", et.Spec.Type, out)
	}
	s.con.Stackf("herald publish --type %s --data '{\"amount\": 0}' is refused with 422 by the catalog:", et.Spec.Type)
	s.con.Line("        " + strings.TrimSpace(out))

	// An operational event.
	name := fmt.Sprintf("%s%d", flakyPrefix, time.Now().Unix())
	ep := &heraldv1.WebhookEndpoint{TypeMeta: typeMeta("WebhookEndpoint"), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: heraldv1.WebhookEndpointSpec{URL: s.receiver.URL(ns, name) + "?" + answerParam + "=410"}}
	sub := &heraldv1.WebhookSubscription{TypeMeta: typeMeta("WebhookSubscription"), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: heraldv1.WebhookSubscriptionSpec{EndpointRef: heraldv1.LocalObjectReference{Name: name}, EventTypes: []string{et.Spec.Type}}}
	for _, o := range []client.Object{ep, sub} {
		if err := s.apply(ctx, o); err != nil {
			return fmt.Errorf("creating the demo's %s: %w", name, err)
		}
	}
	if err := s.waitFor(ctx, name+" to be Ready", time.Minute, func() (bool, error) {
		var got heraldv1.WebhookEndpoint
		if err := s.client.Get(ctx, client.ObjectKeyFromObject(ep), &got); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return meta.IsStatusConditionTrue(got.Status.Conditions, heraldv1.ConditionReady), nil
	}); err != nil {
		return err
	}
	before, _ := s.receiver.snapshot()
	s.con.Stackf("WebhookEndpoint %s answers 410 Gone, so its first delivery disables it; billing subscribes to herald.* (billing-alerts):", name)
	if out, err := s.heraldPublish(ctx, et.Spec.Type, `{"amount": 2500, "currency": "EUR"}`); err != nil {
		return fmt.Errorf("publishing to %s: %v\n%s", name, err, out)
	}
	deadline := time.After(45 * time.Second)
	for {
		got, changed := s.receiver.snapshot()
		for _, d := range got[len(before):] {
			if d.endpoint == "billing" && d.eventType == heraldv1.EventTypeEndpointDisabled && d.verified {
				s.con.Stackf("the operational event herald.endpoint.disabled about %s arrived at billing, signed (herald docs billing documents its payload)", name)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(time.Second):
		case <-deadline:
			s.con.Stackf("herald.endpoint.disabled did not arrive at billing within 45s: see kubectl describe whe %s", name)
			return nil
		}
	}
}

// deleteFlaky removes the flaky endpoints of earlier runs.
func (s *stack) deleteFlaky(ctx context.Context) error {
	var eps heraldv1.WebhookEndpointList
	if err := s.client.List(ctx, &eps, client.InNamespace(s.cfg.namespace)); err != nil {
		return err
	}
	for i := range eps.Items {
		if name := eps.Items[i].Name; strings.HasPrefix(name, flakyPrefix) {
			for _, o := range []client.Object{&eps.Items[i], &heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: s.cfg.namespace, Name: name}}} {
				if err := s.client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
					return fmt.Errorf("deleting %s: %w", name, err)
				}
			}
		}
	}
	return nil
}

// heraldPublish runs herald publish as the producer and returns what it printed.
func (s *stack) heraldPublish(ctx context.Context, typ, data string) (string, error) {
	cmd := exec.CommandContext(ctx, s.cfg.herald, "publish", "--server", s.ingestURL, "--type", typ, "--data", data)
	cmd.Env = append(withoutEnv(os.Environ(), "HERALD_TOKEN", "HERALD_URL", "HERALD_CA_FILE", "KUBECONFIG"), "KUBECONFIG="+s.producer.kubeconfig, "HERALD_CA_FILE="+s.caFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: heraldv1.GroupVersion.String(), Kind: kind}
}
