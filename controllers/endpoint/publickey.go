package endpoint

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/resolve"
)

// actionPublishPublicKey is the Event action of the public-key ConfigMap's writes.
const actionPublishPublicKey = "PublishPublicKey"

// publishPublicKey keeps the ConfigMap <endpoint>-public-key holding the ed25519 public
// keys the resolver found, so that a receiver's owner can fetch them with read access
// to one ConfigMap, never to the Secret. The ConfigMap is read from the API server, not
// watched: the manager's ConfigMap cache is limited to the dispatcher's own, and a
// deleted ConfigMap comes back on the endpoint's next reconcile.
//
// A resolution that failed before the keys were read (an invalid URL, a Secret being
// replaced) leaves the ConfigMap as it is: receivers keep the last key published. It
// goes only when the endpoint resolves and no longer signs with ed25519 at all. A
// ConfigMap of that name that Herald did not create is never touched. The ConfigMap
// carries app.kubernetes.io/managed-by=herald and the endpoint as its controller: the
// chart's ValidatingAdmissionPolicy (manager.configMapPolicy) refuses the manager any
// other ConfigMap write.
func (r *Reconciler) publishPublicKey(ctx context.Context, ep *heraldv1.WebhookEndpoint, res resolve.Result) error {
	want := map[string]string{}
	if res.PublicKey != "" {
		want[heraldv1.PublicKeyConfigMapKey] = res.PublicKey
	}
	if res.PreviousPublicKey != "" {
		want[heraldv1.PreviousPublicKeyConfigMapKey] = res.PreviousPublicKey
	}
	// Only a full resolution (Ready or Suspended) proves that no key is ed25519.
	noEd25519 := res.Config != nil && len(want) == 0
	if len(want) == 0 && !noEd25519 {
		return nil
	}
	name := ep.PublicKeyConfigMapName()
	cm := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ep.Namespace, Name: name}, cm)
	exists := err == nil
	if err != nil && client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading ConfigMap %s/%s: %w", ep.Namespace, name, err)
	}
	log := logf.FromContext(ctx)
	switch {
	case exists && !metav1.IsControlledBy(cm, ep):
		if len(want) > 0 {
			log.Info("not publishing the public key: a ConfigMap of that name exists and is not Herald's", "configMap", name)
		}
		return nil
	case noEd25519:
		if !exists {
			return nil
		}
		if err := r.Client.Delete(ctx, cm, client.Preconditions{UID: &cm.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting ConfigMap %s/%s: %w", ep.Namespace, name, err)
		}
		log.Info("deleted the public-key ConfigMap: the endpoint no longer signs with ed25519", "configMap", name)
		return nil
	case exists && maps.Equal(cm.Data, want):
		return nil
	case exists:
		cm.Data = want
		if err := r.Client.Update(ctx, cm); err != nil {
			return fmt.Errorf("updating ConfigMap %s/%s: %w", ep.Namespace, name, err)
		}
	default:
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ep.Namespace, Labels: map[string]string{
				heraldv1.LabelManagedBy: heraldv1.LabelManagedByValue,
				heraldv1.LabelEndpoint:  ep.Name,
			}},
			Data: want,
		}
		if err := controllerutil.SetControllerReference(ep, cm, r.Client.Scheme(), controllerutil.WithBlockOwnerDeletion(false)); err != nil {
			return fmt.Errorf("setting owner of ConfigMap %s: %w", name, err)
		}
		if err := r.Client.Create(ctx, cm); err != nil {
			return fmt.Errorf("creating ConfigMap %s/%s: %w", ep.Namespace, name, err)
		}
	}
	log.Info("published the ed25519 public key", "configMap", name, "publicKey", res.PublicKey, "previousPublicKey", res.PreviousPublicKey)
	r.Recorder.Eventf(ep, cm, corev1.EventTypeNormal, heraldv1.EventPublicKeyPublished, actionPublishPublicKey,
		"published public key %s in ConfigMap %s%s", res.PublicKey, name, previousNote(res.PreviousPublicKey))
	return nil
}

func previousNote(prev string) string {
	if prev == "" {
		return ""
	}
	return " (previous key " + prev + ", while the rotation lasts)"
}
