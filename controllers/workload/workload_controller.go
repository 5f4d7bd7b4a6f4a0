// Package workload keeps the dispatcher workload in shape: from the manager's flags it
// renders the dispatcher's ServiceAccount, ConfigMap (dispatcher.yaml), Service and either
// a StatefulSet (embedded JetStream on a volume) or a Deployment (external NATS), and
// applies them with server-side apply so that manual drift is reverted. There is no
// custom resource for the dispatcher: the manager's configuration is the desired state,
// and a configuration change reaches the pods through a checksum on the pod template.
package workload

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// FieldManager owns every field the manager sets on the dispatcher objects.
const FieldManager = "herald-manager"

// The workload lives in the manager's own namespace, so a namespaced Role suffices.
// namespace=herald-system is the name controller-gen writes; the chart and kustomize put
// the Role in the namespace they install into. Services, ServiceAccounts and ConfigMaps
// are never deleted by the manager, only StatefulSets and Deployments (mode switch,
// volume template change).
//
// +kubebuilder:rbac:groups=apps,namespace=herald-system,resources=statefulsets;deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",namespace=herald-system,resources=services;serviceaccounts;configmaps,verbs=get;list;watch;create;patch

// Reconciler reconciles the dispatcher workload.
type Reconciler struct {
	Client client.Client
	Config Config
	// APIReader reads the owner Deployment, which the label-filtered cache does not
	// hold. Defaults to the manager's API reader.
	APIReader client.Reader
}

// CacheByObject restricts the manager's cache for the kinds this reconciler watches to
// the dispatcher's namespace and labels: the manager then needs no cluster-wide read
// access to Deployments, ConfigMaps and the like, and holds no copy of them in memory.
// A controller that needs these kinds elsewhere must widen this.
func (c Config) CacheByObject() map[client.Object]cache.ByObject {
	sel := labels.SelectorFromSet(labels.Set{
		LabelComponent:          ComponentValue,
		LabelInstance:           c.Name,
		heraldv1.LabelManagedBy: heraldv1.LabelManagedByValue,
	})
	out := map[client.Object]cache.ByObject{}
	for _, obj := range watchedKinds() {
		out[obj] = cache.ByObject{Namespaces: map[string]cache.Config{c.Namespace: {}}, Label: sel}
	}
	return out
}

func watchedKinds() []client.Object {
	return []client.Object{&appsv1.StatefulSet{}, &appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}, &corev1.ConfigMap{}}
}

// SetupWithManager validates the configuration and registers the reconciler. An invalid
// configuration fails the manager's start with a message naming the flag.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.Config.Validate(); err != nil {
		return err
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	// One desired state, so one request: every event maps onto it.
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: r.Config.Namespace, Name: r.Config.Name}}
	toReq := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{req}
	})
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == r.Config.Namespace && (o.GetName() == r.Config.Name || o.GetName() == r.Config.CAConfigMapName())
	})
	// StatefulSet and Deployment status changes all the time in a live cluster and is not
	// ours; react to spec (generation), label and annotation changes only.
	specOrMeta := predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{})

	b := ctrl.NewControllerManagedBy(mgr).Named("dispatcher-workload")
	for _, obj := range watchedKinds() {
		preds := []predicate.Predicate{ours}
		switch obj.(type) {
		case *appsv1.StatefulSet, *appsv1.Deployment:
			preds = append(preds, specOrMeta)
		}
		b = b.Watches(obj, toReq, builder.WithPredicates(preds...))
	}
	// With nothing created yet there is no event to react to: enqueue the request once
	// when the controller starts (after leader election).
	b = b.WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		q.Add(req)
		return nil
	}))
	if err := b.Complete(r); err != nil {
		return fmt.Errorf("building dispatcher workload controller: %w", err)
	}
	return nil
}

// Reconcile applies the desired dispatcher objects and removes the workload kind of the
// other mode.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	c := r.Config
	log := ctrl.LoggerFrom(ctx).WithValues("namespace", c.Namespace, "name", c.Name, "mode", c.Mode)

	owner, err := r.ownerReference(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	rendered, checksum, err := render(c.Rendered())
	if err != nil {
		return ctrl.Result{}, err
	}
	// The certificate before the pods that mount it.
	tlsRecheck, err := r.reconcileTLS(ctx, owner)
	if err != nil {
		return ctrl.Result{}, err
	}

	objs := c.desired(owner, rendered, checksum)
	for _, o := range objs[:len(objs)-1] {
		if err := r.apply(ctx, o.kind, o.obj); err != nil {
			return ctrl.Result{}, err
		}
	}
	workload := objs[len(objs)-1]
	switch c.Mode {
	case ModeEmbedded:
		recreating, err := r.deleteStatefulSetIfClaimTemplateChanged(ctx)
		if err != nil || recreating {
			// The delete event brings us back here to create it afresh.
			return ctrl.Result{}, err
		}
		if err := r.apply(ctx, workload.kind, workload.obj); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.deleteIfPresent(ctx, &appsv1.Deployment{}); err != nil {
			return ctrl.Result{}, err
		}
	case ModeExternal:
		if err := r.apply(ctx, workload.kind, workload.obj); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.deleteIfPresent(ctx, &appsv1.StatefulSet{}); err != nil {
			return ctrl.Result{}, err
		}
	}
	log.V(1).Info("dispatcher workload applied", "configChecksum", checksum)
	return ctrl.Result{RequeueAfter: tlsRecheck}, nil
}

// object is one object of the dispatcher's, as applied.
type object struct {
	kind string
	obj  runtime.ApplyConfiguration
}

// desired lists the dispatcher's objects in the order they are applied, the workload
// (StatefulSet or Deployment, by mode) last: the ConfigMap goes before it so that new
// pods find the configuration.
func (c Config) desired(owner *metav1ac.OwnerReferenceApplyConfiguration, rendered, checksum string) []object {
	objs := []object{
		{"ServiceAccount", c.serviceAccount(owner)},
		{"ConfigMap", c.configMap(owner, rendered)},
		{"Service", c.service(owner)},
	}
	if c.Mode == ModeExternal {
		return append(objs, object{"Deployment", c.deployment(owner, checksum)})
	}
	return append(objs, object{"StatefulSet", c.statefulSet(owner, checksum)})
}

// apply server-side applies obj, taking over any field another manager changed: drift
// from kubectl edit or scale is reverted, which is the point of this controller.
func (r *Reconciler) apply(ctx context.Context, kind string, obj runtime.ApplyConfiguration) error {
	if err := r.Client.Apply(ctx, obj, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying dispatcher %s %s/%s: %w", kind, r.Config.Namespace, r.Config.Name, err)
	}
	return nil
}

func (r *Reconciler) deleteIfPresent(ctx context.Context, obj client.Object) error {
	key := client.ObjectKey{Namespace: r.Config.Namespace, Name: r.Config.Name}
	kind := fmt.Sprintf("%T", obj)
	if err := r.Client.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading %s %s: %w", kind, key, err)
	}
	if obj.GetDeletionTimestamp() != nil {
		return nil
	}
	ctrl.LoggerFrom(ctx).Info("deleting dispatcher workload of the other mode", "kind", kind, "object", key)
	if err := r.Client.Delete(ctx, obj, client.Preconditions{UID: ptr.To(obj.GetUID())}, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s %s: %w", kind, key, err)
	}
	return nil
}

// deleteStatefulSetIfClaimTemplateChanged handles a changed storage size or class. The
// API server refuses any change to volumeClaimTemplates, so the StatefulSet is deleted
// and created again; its PersistentVolumeClaim is retained and reused as it is (growing
// an existing volume is the StorageClass's business, not the manager's).
func (r *Reconciler) deleteStatefulSetIfClaimTemplateChanged(ctx context.Context) (bool, error) {
	var sts appsv1.StatefulSet
	key := client.ObjectKey{Namespace: r.Config.Namespace, Name: r.Config.Name}
	if err := r.Client.Get(ctx, key, &sts); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading StatefulSet %s: %w", key, err)
	}
	if sts.DeletionTimestamp != nil {
		return true, nil
	}
	if claimTemplateMatches(sts.Spec.VolumeClaimTemplates, r.Config) {
		return false, nil
	}
	ctrl.LoggerFrom(ctx).Info("storage settings changed; recreating the dispatcher StatefulSet (the existing volume is kept and not resized)",
		"object", key, "storageSize", r.Config.StorageSize, "storageClass", r.Config.StorageClass)
	if err := r.Client.Delete(ctx, &sts, client.Preconditions{UID: &sts.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting StatefulSet %s to change its volume template: %w", key, err)
	}
	return true, nil
}

func claimTemplateMatches(templates []corev1.PersistentVolumeClaim, c Config) bool {
	for _, t := range templates {
		if t.Name != storageTemplate {
			continue
		}
		want := resource.MustParse(c.StorageSize)
		got := t.Spec.Resources.Requests[corev1.ResourceStorage]
		class := ""
		if t.Spec.StorageClassName != nil {
			class = *t.Spec.StorageClassName
		}
		return got.Cmp(want) == 0 && class == c.StorageClass
	}
	return false
}

// ownerReference points at the manager's Deployment, so deleting the manager deletes
// the dispatcher. blockOwnerDeletion stays unset: it would need update rights on
// deployments/finalizers for no benefit here.
func (r *Reconciler) ownerReference(ctx context.Context) (*metav1ac.OwnerReferenceApplyConfiguration, error) {
	if r.Config.OwnerDeployment == "" {
		return nil, nil
	}
	var d appsv1.Deployment
	key := client.ObjectKey{Namespace: r.Config.Namespace, Name: r.Config.OwnerDeployment}
	if err := r.APIReader.Get(ctx, key, &d); err != nil {
		return nil, fmt.Errorf("reading the owner Deployment %s (--dispatcher-owner-deployment): %w", key, err)
	}
	return metav1ac.OwnerReference().
		WithAPIVersion("apps/v1").
		WithKind("Deployment").
		WithName(d.Name).
		WithUID(d.UID), nil
}
