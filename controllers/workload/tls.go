package workload

import (
	"bytes"
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/herald-dev/herald/internal/servingcert"
)

// The manager needs to write its CA and the serving certificate in its own namespace.
// +kubebuilder:rbac:groups="",namespace=herald-system,resources=secrets,verbs=get;create;patch

// caPreviousKey holds, in the CA Secret, the CAs replaced but still valid: they stay in
// the published bundle until they expire, so clients that read the bundle before a CA
// was replaced keep trusting certificates it signed.
const caPreviousKey = "previous.crt"

// externalRecheck is how often the CA of a certificate someone else issues is looked at.
const externalRecheck = 10 * time.Minute

// reconcileTLS makes sure the dispatcher has its serving certificate (TLSManager: a CA
// and the certificate, renewed two thirds into their lifetimes) and publishes the CA in
// the ConfigMap <name>-ca. It returns when to look again.
func (r *Reconciler) reconcileTLS(ctx context.Context, owner *metav1ac.OwnerReferenceApplyConfiguration) (time.Duration, error) {
	c := r.Config
	now := time.Now()
	var bundle []byte
	next := externalRecheck
	switch c.TLS {
	case TLSManager:
		var err error
		if bundle, next, err = r.issue(ctx, owner, now); err != nil {
			return 0, err
		}
	case TLSExternal:
		s, err := r.secret(ctx, c.TLSSecretName())
		if err != nil || s == nil {
			// Not issued yet (cert-manager takes a moment): the pod waits for its volume.
			return time.Minute, err
		}
		bundle = s.Data[CAConfigMapKey]
	default:
		return 0, nil
	}
	if len(bundle) == 0 {
		ctrl.LoggerFrom(ctx).Info("the dispatcher's TLS Secret has no ca.crt to publish", "secret", c.TLSSecretName())
		return next, nil
	}
	cm := corev1ac.ConfigMap(c.CAConfigMapName(), c.Namespace)
	cm.ObjectMetaApplyConfiguration = c.meta(owner).WithName(c.CAConfigMapName())
	if err := r.apply(ctx, "ConfigMap", cm.WithData(map[string]string{CAConfigMapKey: string(bundle)})); err != nil {
		return 0, err
	}
	return next, nil
}

// issue keeps the manager's CA and the serving certificate current and returns the CA
// bundle and when to look again.
func (r *Reconciler) issue(ctx context.Context, owner *metav1ac.OwnerReferenceApplyConfiguration, now time.Time) ([]byte, time.Duration, error) {
	c := r.Config
	log := ctrl.LoggerFrom(ctx)
	caSecret, err := r.secret(ctx, c.CASecretName())
	if err != nil {
		return nil, 0, err
	}
	var ca servingcert.Pair
	var previous []byte
	if caSecret != nil {
		ca = servingcert.Pair{Cert: caSecret.Data[corev1.TLSCertKey], Key: caSecret.Data[corev1.TLSPrivateKeyKey]}
		previous = caSecret.Data[caPreviousKey]
	}
	renewCA, err := servingcert.RenewAt(ca.Cert)
	if err != nil || !now.Before(renewCA) {
		if err == nil {
			previous = servingcert.Bundle(now, ca.Cert, previous)
		}
		if ca, err = servingcert.NewCA(fmt.Sprintf("Herald dispatcher CA (%s/%s)", c.Namespace, c.Name), servingcert.CAValidity, now); err != nil {
			return nil, 0, err
		}
		previous = servingcert.Bundle(now, previous)
		s := r.secretApply(owner, c.CASecretName(), corev1.SecretTypeOpaque, map[string][]byte{
			corev1.TLSCertKey: ca.Cert, corev1.TLSPrivateKeyKey: ca.Key, caPreviousKey: previous,
		})
		if err := r.apply(ctx, "Secret", s); err != nil {
			return nil, 0, err
		}
		log.Info("made a new CA for the dispatcher's TLS", "secret", c.CASecretName(), "keptPrevious", len(previous) > 0)
		renewCA, _ = servingcert.RenewAt(ca.Cert)
	}
	bundle := servingcert.Bundle(now, ca.Cert, previous)

	// A certificate of a CA being replaced goes on serving until its own renewal:
	// clients get the new CA in the bundle first.
	serving, err := r.secret(ctx, c.TLSSecretName())
	if err != nil {
		return nil, 0, err
	}
	var cert servingcert.Pair
	if serving != nil {
		cert = servingcert.Pair{Cert: serving.Data[corev1.TLSCertKey], Key: serving.Data[corev1.TLSPrivateKeyKey]}
	}
	if !servingcert.Serves(cert, bundle, c.ServingHosts(), now) {
		if cert, err = servingcert.Issue(ca, c.ServingHosts(), servingcert.ServingValidity, now); err != nil {
			return nil, 0, err
		}
		log.Info("issued the dispatcher's serving certificate", "secret", c.TLSSecretName())
	}
	if serving == nil || !bytes.Equal(serving.Data[corev1.TLSCertKey], cert.Cert) || !bytes.Equal(serving.Data[CAConfigMapKey], bundle) {
		s := r.secretApply(owner, c.TLSSecretName(), corev1.SecretTypeTLS, map[string][]byte{
			corev1.TLSCertKey: cert.Cert, corev1.TLSPrivateKeyKey: cert.Key, CAConfigMapKey: bundle,
		})
		if err := r.apply(ctx, "Secret", s); err != nil {
			return nil, 0, err
		}
	}
	renewServing, err := servingcert.RenewAt(cert.Cert)
	if err != nil {
		return nil, 0, err
	}
	next := min(renewServing.Sub(now), renewCA.Sub(now))
	return bundle, max(next, time.Minute), nil
}

func (r *Reconciler) secretApply(owner *metav1ac.OwnerReferenceApplyConfiguration, name string, typ corev1.SecretType, data map[string][]byte) *corev1ac.SecretApplyConfiguration {
	s := corev1ac.Secret(name, r.Config.Namespace)
	s.ObjectMetaApplyConfiguration = r.Config.meta(owner).WithName(name)
	return s.WithType(typ).WithData(data)
}

// secret reads a Secret of the dispatcher's namespace from the API server (the manager
// caches no Secret content); nil when there is none.
func (r *Reconciler) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	var s corev1.Secret
	key := client.ObjectKey{Namespace: r.Config.Namespace, Name: name}
	if err := r.APIReader.Get(ctx, key, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	return &s, nil
}
