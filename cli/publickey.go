package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

type endpointPublicKeyOptions struct {
	kube     kubeOptions
	previous bool
	output   string
	timeout  time.Duration
}

func newEndpointPublicKeyCommand() *cobra.Command {
	o := &endpointPublicKeyOptions{}
	cmd := &cobra.Command{
		Use:   "public-key ENDPOINT",
		Short: "Print the ed25519 public key receivers verify an endpoint's deliveries with",
		Long: `Print the public key (whpk_...) of a WebhookEndpoint with signature style
StandardWebhooksEd25519: what its receiver verifies the v1a signatures with. It is read
from the endpoint's status.publicKey, so get on webhookendpoints is enough; the private
key (whsk_..., in the endpoint's Secret) is never read. The same key is in the ConfigMap
<endpoint>-public-key of the endpoint's namespace.

During a rotation (spec.previousSecretRef) deliveries carry a signature by each key;
--previous prints the key being rotated out, -o json or yaml prints both.`,
		Example: `  herald endpoint public-key billing -n shop > billing.pub
  herald verify --public-key-file billing.pub --headers-file request.txt
  herald endpoint public-key billing -o json`,
		Args: exactlyOneEndpoint,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	fs.BoolVar(&o.previous, "previous", false, "print the public key being rotated out instead")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table (the key alone), json or yaml")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the API server")
	return cmd
}

// PublicKeys is what herald endpoint public-key prints with -o json or yaml.
type PublicKeys struct {
	Namespace string `json:"namespace"`
	Endpoint  string `json:"endpoint"`
	PublicKey string `json:"publicKey"`
	// PreviousPublicKey is set during a rotation from an ed25519 key.
	PreviousPublicKey string `json:"previousPublicKey,omitempty"`
	// ConfigMap holds the same keys for readers who may not read the endpoint.
	ConfigMap string `json:"configMap"`
}

func (o *endpointPublicKeyOptions) run(cmd *cobra.Command, name string) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	ns, ep, err := readEndpoint(cmd.Context(), &o.kube, o.timeout, name)
	if err != nil {
		return err
	}
	keys := PublicKeys{Namespace: ns, Endpoint: name, PublicKey: ep.Status.PublicKey,
		PreviousPublicKey: ep.Status.PreviousPublicKey, ConfigMap: ep.PublicKeyConfigMapName()}
	if err := publicKeyMissing(ep, o.previous); err != nil {
		return err
	}
	if o.output != "table" {
		return printObject(cmd.OutOrStdout(), o.output, keys)
	}
	key := keys.PublicKey
	if o.previous {
		key = keys.PreviousPublicKey
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), key)
	return err
}

// publicKeyMissing says why the endpoint has no public key to print, and what to do.
func publicKeyMissing(ep *heraldv1.WebhookEndpoint, previous bool) error {
	style := ep.Spec.SignatureStyle()
	switch {
	case previous && ep.Status.PreviousPublicKey != "":
		return nil
	case previous:
		return fmt.Errorf("WebhookEndpoint %s/%s has no previous public key: it is not rotating from an ed25519 key (spec.previousSecretRef)", ep.Namespace, ep.Name)
	case ep.Status.PublicKey != "":
		return nil
	case style != heraldv1.SignatureStandardWebhooksEd25519:
		return fmt.Errorf("WebhookEndpoint %s/%s signs with %s, an HMAC secret shared with the receiver: there is no public key. Set spec.signature.style %s for asymmetric signatures",
			ep.Namespace, ep.Name, style, heraldv1.SignatureStandardWebhooksEd25519)
	}
	why := "the manager has not published it yet: is herald manager running?"
	if c := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionReady); c != nil && c.Reason != heraldv1.ReasonReady {
		why = fmt.Sprintf("its key is not usable: Ready is %s (%s): %s", c.Status, c.Reason, c.Message)
	}
	return fmt.Errorf("WebhookEndpoint %s/%s has no public key on its status; %s", ep.Namespace, ep.Name, why)
}
