// Package helmcontroller reconciles HelmChart and HelmChartConfig resources
// (helm.cattle.io/v1, k3s's field names) with the Helm SDK, inside the kasa
// server: no job pods and no helm image. A HelmChart's release is
// installed, upgraded when its spec or its HelmChartConfig changes, and
// uninstalled when the HelmChart is deleted. Failures show in the
// resource's status and in events, and are retried with exponential
// backoff.
package helmcontroller

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/deploy"
)

//go:embed crds.yaml
var crdYAML []byte

// Controller is the helm controller component.
type Controller struct {
	// RESTConfig reaches the API server as admin.
	RESTConfig *rest.Config
	// Kubeconfig is the same credential as a file, for the Helm SDK.
	Kubeconfig string
	// StateDir keeps Helm's caches (repository indexes, downloaded charts).
	StateDir string
	// BaseDelay and MaxDelay bound the retry backoff: 5 s and 5 min when zero.
	BaseDelay, MaxDelay time.Duration
	Log                 *slog.Logger

	dyn      dynamic.Interface
	charts   cache.GenericLister
	configs  cache.GenericLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	helm     *helm
}

var _ component.Component = (*Controller)(nil)

// Name implements component.Component.
func (c *Controller) Name() string { return "helm-controller" }

// Run implements component.Component: ready once the resource definitions
// are established and the caches are filled.
func (c *Controller) Run(ctx context.Context, ready func()) error {
	var err error
	if c.dyn, err = dynamic.NewForConfig(c.RESTConfig); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.RESTConfig)
	if err != nil {
		return err
	}
	if err := ensureCRDs(ctx, c.RESTConfig, c.dyn); err != nil {
		return fmt.Errorf("helm resource definitions: %w", err)
	}
	c.helm = &helm{kubeconfig: c.Kubeconfig, stateDir: c.StateDir, log: c.Log}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kasa-helm-controller"})

	base, maxDelay := c.BaseDelay, c.MaxDelay
	if base == 0 {
		base = 5 * time.Second
	}
	if maxDelay == 0 {
		maxDelay = 5 * time.Minute
	}
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](base, maxDelay),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "helmcharts"})
	defer c.queue.ShutDown()

	factory := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 0)
	chartInf := factory.ForResource(ChartGVR)
	configInf := factory.ForResource(ConfigGVR)
	c.charts, c.configs = chartInf.Lister(), configInf.Lister()
	// Status updates do not bump the generation: acting on them would undo
	// the backoff, so only spec changes, deletions and finalizers count.
	if _, err := chartInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			o, n := oldObj.(*unstructured.Unstructured), newObj.(*unstructured.Unstructured)
			if o.GetGeneration() != n.GetGeneration() || n.GetDeletionTimestamp() != nil && o.GetDeletionTimestamp() == nil {
				c.enqueue(newObj)
			}
		},
	}); err != nil {
		return err
	}
	if _, err := configInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			if oldObj.(*unstructured.Unstructured).GetGeneration() != newObj.(*unstructured.Unstructured).GetGeneration() {
				c.enqueue(newObj)
			}
		},
		DeleteFunc: c.enqueue,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for gvr, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache of %s not filled", gvr.Resource)
		}
	}
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	ready()
	for c.next(ctx) {
	}
	return nil
}

// enqueue adds a chart's key (a HelmChartConfig names its chart).
func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		c.Log.Warn("helm chart not reconciled, retrying", "helmchart", key, "in", c.queue.NumRequeues(key), "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// sync reconciles one HelmChart.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, err := c.charts.ByNamespace(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	u := obj.(*unstructured.Unstructured).DeepCopy()
	var spec ChartSpec
	var status ChartStatus
	if err := fromMap(u.Object["spec"], &spec); err != nil {
		return c.fail(ctx, u, status, "InvalidSpec", err)
	}
	_ = fromMap(u.Object["status"], &status)
	target := spec.TargetNamespace
	if target == "" {
		target = ns
	}

	if u.GetDeletionTimestamp() != nil {
		if !slices.Contains(u.GetFinalizers(), Finalizer) {
			return nil
		}
		if err := c.helm.uninstall(target, name); err != nil {
			c.recorder.Eventf(u, corev1.EventTypeWarning, "UninstallFailed", "uninstall of release %s/%s: %v", target, name, err)
			return err
		}
		c.recorder.Eventf(u, corev1.EventTypeNormal, "Uninstalled", "release %s/%s uninstalled", target, name)
		c.Log.Info("helm release uninstalled", "release", target+"/"+name)
		return c.setFinalizer(ctx, u, false)
	}
	if !slices.Contains(u.GetFinalizers(), Finalizer) {
		if err := c.setFinalizer(ctx, u, true); err != nil {
			return err
		}
	}

	var config ConfigSpec
	if cobj, err := c.configs.ByNamespace(ns).Get(name); err == nil {
		if err := fromMap(cobj.(*unstructured.Unstructured).Object["spec"], &config); err != nil {
			return c.fail(ctx, u, status, "InvalidConfig", fmt.Errorf("HelmChartConfig %s/%s: %w", ns, name, err))
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	ch, err := c.helm.loadChart(spec)
	if err != nil {
		return c.fail(ctx, u, status, "ChartNotLoaded", err)
	}
	vals, err := values(spec, config)
	if err != nil {
		return c.fail(ctx, u, status, "InvalidValues", err)
	}
	hash, err := digest(ch, vals, target)
	if err != nil {
		return err
	}
	policy := spec.FailurePolicy
	if config.FailurePolicy != "" {
		policy = config.FailurePolicy
	}
	timeout := 5 * time.Minute
	if spec.Timeout != "" {
		if timeout, err = time.ParseDuration(spec.Timeout); err != nil {
			return c.fail(ctx, u, status, "InvalidSpec", fmt.Errorf("spec.timeout %q: %w", spec.Timeout, err))
		}
	}
	res, err := c.helm.apply(ctx, releaseSpec{
		Name: name, Namespace: target, CreateNamespace: spec.CreateNamespace,
		Chart: ch, Values: vals, Hash: hash, Timeout: timeout, Policy: policy,
	})
	if err != nil {
		return c.fail(ctx, u, status, "InstallFailed", err)
	}
	if res.Action != "" {
		// A Helm operation leaves tens of MiB of garbage (rendering,
		// discovery, OpenAPI schemas) that the runtime would hand back to
		// the system only slowly: return it now, once per operation.
		defer debug.FreeOSMemory()
		c.recorder.Eventf(u, corev1.EventTypeNormal, res.Action, "release %s/%s revision %d: chart %s-%s",
			target, name, res.Revision, ch.Metadata.Name, ch.Metadata.Version)
		c.Log.Info("helm release "+res.Action, "release", target+"/"+name, "revision", res.Revision,
			"chart", ch.Metadata.Name+"-"+ch.Metadata.Version)
	}
	status.ObservedGeneration = u.GetGeneration()
	status.ReleaseRevision = res.Revision
	status.ChartVersion = ch.Metadata.Version
	status.AppliedHash = hash
	setCondition(&status, ConditionReady, "True", "Deployed", fmt.Sprintf("revision %d deployed", res.Revision))
	setCondition(&status, ConditionFailed, "False", "Deployed", "")
	return c.writeStatus(ctx, u, status)
}

// fail records an error in the status and as an event, and returns it so
// that the key is retried with backoff.
func (c *Controller) fail(ctx context.Context, u *unstructured.Unstructured, status ChartStatus, reason string, cause error) error {
	msg := cause.Error()
	c.recorder.Event(u, corev1.EventTypeWarning, reason, msg)
	status.ObservedGeneration = u.GetGeneration()
	setCondition(&status, ConditionReady, "False", reason, msg)
	setCondition(&status, ConditionFailed, "True", reason, msg)
	if err := c.writeStatus(ctx, u, status); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func (c *Controller) writeStatus(ctx context.Context, u *unstructured.Unstructured, status ChartStatus) error {
	data, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = c.dyn.Resource(ChartGVR).Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.MergePatchType, data, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *Controller) setFinalizer(ctx context.Context, u *unstructured.Unstructured, present bool) error {
	finalizers := slices.DeleteFunc(slices.Clone(u.GetFinalizers()), func(f string) bool { return f == Finalizer })
	if present {
		finalizers = append(finalizers, Finalizer)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"finalizers": finalizers, "resourceVersion": u.GetResourceVersion(),
	}})
	if err != nil {
		return err
	}
	out, err := c.dyn.Resource(ChartGVR).Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) && !present {
		return nil
	}
	if err != nil {
		return err
	}
	u.SetResourceVersion(out.GetResourceVersion())
	u.SetFinalizers(out.GetFinalizers())
	return nil
}

func setCondition(s *ChartStatus, typ, status, reason, msg string) {
	now := time.Now().UTC().Format(time.RFC3339)
	for i := range s.Conditions {
		c := &s.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message = status, reason, msg
		return
	}
	s.Conditions = append(s.Conditions, Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: now})
}

func fromMap(in any, out any) error {
	m, ok := in.(map[string]any)
	if !ok {
		return nil
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(m, out)
}

// ensureCRDs applies the resource definitions and waits until they serve.
func ensureCRDs(ctx context.Context, rc *rest.Config, dyn dynamic.Interface) error {
	if err := deploy.Apply(ctx, rc, crdYAML); err != nil {
		return err
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, gvr := range []schema.GroupVersionResource{ChartGVR, ConfigGVR} {
			got, err := crds.Get(ctx, gvr.Resource+"."+gvr.Group, metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // not there yet: poll again
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			if !slices.ContainsFunc(conds, func(c any) bool {
				m, _ := c.(map[string]any)
				return m["type"] == "Established" && m["status"] == "True"
			}) {
				return false, nil
			}
		}
		return true, nil
	})
}
