package endpoint

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/signer"
)

// signingSecretPrefix and signingSecretBytes define the generated secret: the Standard
// Webhooks form "whsec_" + base64(32 random bytes), which the other signature styles use
// as an opaque string.
const (
	signingSecretPrefix = "whsec_"
	signingSecretBytes  = 32
)

// inputs are what the checks look at.
type inputs struct {
	endpoint *heraldv1.WebhookEndpoint
	// result is dispatcher/resolve's judgement on the endpoint and its Secrets.
	result resolve.Result
	// generateErr says why a missing signing Secret could not be generated.
	generateErr error
}

// gatherInputs generates the signing Secret when it does not exist, then has the
// resolver judge the endpoint. It returns inputs with an error when generation failed
// (the checks report it and the reconcile is retried) and nil inputs when the API
// server could not be read.
func (r *Reconciler) gatherInputs(ctx context.Context, ep *heraldv1.WebhookEndpoint) (*inputs, error) {
	in := &inputs{endpoint: ep}
	ref := ep.SigningSecretRef()
	signing, err := r.getSecret(ctx, ep.Namespace, ref.Name)
	if err != nil {
		return nil, err
	}
	if signing == nil {
		signing, in.generateErr = r.generateSigningSecret(ctx, ep, ref)
	}
	// The signing Secret was just read or created: the resolver gets it from here, and
	// every other Secret from the API server.
	get := func(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
		if name == ref.Name {
			return signing, nil
		}
		return r.getSecret(ctx, namespace, name)
	}
	if in.result, err = resolve.Endpoint(ctx, ep, get, r.Policy, resolve.WithServices(r.getService)); err != nil {
		return nil, err
	}
	return in, in.generateErr
}

// getSecret reads a Secret from the API server; (nil, nil) when it does not exist.
func (r *Reconciler) getSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	return s, nil
}

// getService reads a Service from the API server; (nil, nil) when it does not exist.
// The manager's cache holds only the dispatcher's own Service; the dispatcher watches
// the Services endpoints name, and its Delivering condition brings the endpoint back
// here when one appears.
func (r *Reconciler) getService(ctx context.Context, namespace, name string) (*corev1.Service, error) {
	s := &corev1.Service{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Service %s/%s: %w", namespace, name, err)
	}
	return s, nil
}

// generateSigningSecret creates the signing Secret, owned by the endpoint so it goes
// away with it. Create, never update: if a Secret of that name appeared meanwhile it
// belongs to someone else and is used as it is.
func (r *Reconciler) generateSigningSecret(ctx context.Context, ep *heraldv1.WebhookEndpoint, ref heraldv1.SecretKeySelector) (*corev1.Secret, error) {
	value, what, err := newSigningSecret(ep.Spec.SignatureStyle())
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      ref.Name,
			Namespace: ep.Namespace,
			Labels: map[string]string{
				heraldv1.LabelManagedBy: heraldv1.LabelManagedByValue,
				heraldv1.LabelEndpoint:  ep.Name,
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{ref.Key: []byte(value)},
	}
	// No blockOwnerDeletion: it would need update rights on webhookendpoints/finalizers
	// where OwnerReferencesPermissionEnforcement is on, for no benefit here.
	if err := controllerutil.SetControllerReference(ep, secret, r.Client.Scheme(), controllerutil.WithBlockOwnerDeletion(false)); err != nil {
		return nil, fmt.Errorf("setting owner of signing Secret %s: %w", ref.Name, err)
	}
	if err := r.Client.Create(ctx, secret); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Created by someone else since we looked (or still terminating): use it.
			existing, getErr := r.getSecret(ctx, ep.Namespace, ref.Name)
			if getErr != nil {
				return nil, getErr
			}
			if existing != nil {
				return existing, nil
			}
		}
		// The API server's message names the object and the cause, never data values.
		return nil, fmt.Errorf("creating signing Secret %s/%s: %w", ep.Namespace, ref.Name, err)
	}
	logf.FromContext(ctx).Info("generated signing Secret", "secret", ref.Name, "key", ref.Key)
	r.Recorder.Eventf(ep, secret, corev1.EventTypeNormal, heraldv1.EventSecretGenerated, actionGenerateSecret,
		"generated %s %s (key %s)", what, ref.Name, ref.Key)
	return secret, nil
}

// newSigningSecret returns "whsec_" + base64 of 32 bytes from crypto/rand, or for the
// ed25519 style a new key pair's private key, "whsk_" + base64 of its seed (the public
// key derives from it and is published, never stored beside it). what names it for the
// Event.
func newSigningSecret(style heraldv1.SignatureStyle) (value, what string, err error) {
	if style == heraldv1.SignatureStandardWebhooksEd25519 {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", "", fmt.Errorf("generating an ed25519 key pair: %w", err)
		}
		return signer.PrivateKeyText(priv), "ed25519 signing key in Secret", nil
	}
	b := make([]byte, signingSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("reading random bytes for a signing secret: %w", err)
	}
	return signingSecretPrefix + base64.StdEncoding.EncodeToString(b), "signing secret", nil
}
