package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/receiverdocs"
	"github.com/herald-dev/herald/internal/eventschema"
	"github.com/herald-dev/herald/pkg/wire"
)

type docsOptions struct {
	kube    kubeOptions
	api     apiOptions
	viaAPI  bool
	output  string
	timeout time.Duration
}

func newDocsCommand() *cobra.Command {
	o := &docsOptions{}
	cmd := &cobra.Command{
		Use:   "docs ENDPOINT",
		Short: "Print the OpenAPI 3.1 document of what an endpoint receives, for the developers of its receiver",
		Long: `Print an OpenAPI 3.1 document with one entry under "webhooks" per event type the
endpoint receives: the request body exactly as Herald sends it to this endpoint (the
envelope or the data alone, with its extra fields, and the JSON Schema of each type from
the namespace's WebhookEventTypes), the headers of its signature style and how to verify
them, its retry schedule and its auto-disable rule. Herald's own operational events
(herald.*) appear when a subscription of the endpoint names them.

The document is written from the endpoint, the namespace's subscriptions and its
WebhookEventTypes, read from the API server (get on webhookendpoints, list on
webhooksubscriptions and webhookeventtypes: the herald-operator role); --via-api asks
the dispatcher's endpoint API instead (GET .../endpoints/NAME/openapi), which writes the
same document from what the dispatcher enforces.`,
		Example: `  herald docs billing -n shop > billing-webhooks.json
  herald docs billing -o yaml
  npx @redocly/cli build-docs billing-webhooks.json   # an HTML reference for the receiver's team`,
		Args: exactlyOneEndpoint,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	o.api.bind(fs)
	fs.BoolVar(&o.viaAPI, "via-api", false, "ask the dispatcher's endpoint API for the document instead of the API server")
	fs.StringVarP(&o.output, "output", "o", "json", "output format: json or yaml")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the API server or the dispatcher")
	return cmd
}

func (o *docsOptions) run(cmd *cobra.Command, name string) error {
	if o.output != "json" && o.output != "yaml" {
		return fmt.Errorf("--output %q is not supported: use json or yaml", o.output)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	ns, err := o.kube.Namespace()
	if err != nil {
		return err
	}
	var doc []byte
	if o.viaAPI {
		api, err := o.api.client(&o.kube, ns)
		if err != nil {
			return err
		}
		raw, err := api.endpoint(name).OpenAPI(ctx)
		if err := api.explain(ctx, err, name, "reading the receiver documentation", wire.VerbRead, "drop --via-api to write it from the API server"); err != nil {
			return err
		}
		doc = raw
	} else if doc, err = docsFromCluster(ctx, &o.kube, ns, name); err != nil {
		return err
	}
	if o.output == "yaml" {
		if doc, err = yaml.JSONToYAML(doc); err != nil {
			return err
		}
	} else {
		doc = append(doc, '\n')
	}
	_, err = cmd.OutOrStdout().Write(doc)
	return err
}

func docsFromCluster(ctx context.Context, kube *kubeOptions, ns, name string) ([]byte, error) {
	c, err := kubeClient(kube)
	if err != nil {
		return nil, err
	}
	ep, err := getEndpoint(ctx, c, ns, name)
	if err != nil {
		return nil, err
	}
	var subs heraldv1.WebhookSubscriptionList
	if err := c.List(ctx, &subs, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing the WebhookSubscriptions of namespace %s: %w", ns, err)
	}
	var types heraldv1.WebhookEventTypeList
	if err := c.List(ctx, &types, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing the WebhookEventTypes of namespace %s: %w", ns, err)
	}
	return receiverdocs.Build(receiverdocs.Input{Endpoint: ep, Subscriptions: subs.Items, Catalog: eventschema.Catalog(types.Items)})
}
