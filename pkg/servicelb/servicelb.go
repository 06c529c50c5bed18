// Package servicelb is kasa's ServiceLB: it gives each LoadBalancer service
// without a loadBalancerClass the addresses of the nodes. There are no pods
// and no image: kube-proxy on every node already sends traffic for a
// service's status.loadBalancer.ingress addresses (ipMode VIP) to its
// endpoints, so the controller only writes the addresses. Two services that
// want the same port on the same address cannot share it: the older keeps
// it and the other waits, with a PortInUse event, until the port is free.
package servicelb

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/kasa-io/kasa/pkg/component"
)

// Event reasons.
const (
	// ReasonPortInUse marks a service that waits for a port another
	// service holds.
	ReasonPortInUse = "PortInUse"
	// ReasonLoadBalancerIPIgnored marks a service whose spec.loadBalancerIP
	// is not the address of a node that serves load balancers.
	ReasonLoadBalancerIPIgnored = "LoadBalancerIPIgnored"
)

// Controller assigns node addresses to LoadBalancer services.
type Controller struct {
	Client kubernetes.Interface
	Log    *slog.Logger
	// Resync, when not zero, checks every service again at this interval.
	Resync time.Duration
}

var _ component.Component = (*Controller)(nil)

// Name implements component.Component.
func (c *Controller) Name() string { return "servicelb" }

// Run implements component.Component: ready once the caches of services and
// nodes are filled.
func (c *Controller) Run(ctx context.Context, ready func()) error {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.Client.CoreV1().Events("")})

	factory := informers.NewSharedInformerFactory(c.Client, c.Resync)
	svcInformer := factory.Core().V1().Services()
	nodeInformer := factory.Core().V1().Nodes()
	r := &run{
		client:   c.Client,
		log:      log,
		services: svcInformer.Lister(),
		nodes:    nodeInformer.Lister(),
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kasa-servicelb"}),
		given:    map[string][]corev1.LoadBalancerIngress{},
		warned:   map[note]string{},
	}
	defer r.queue.ShutDown()

	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			svc := obj.(*corev1.Service)
			r.enqueue(obj)
			if handled(svc) {
				r.enqueueAll()
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, svc := oldObj.(*corev1.Service), newObj.(*corev1.Service)
			r.enqueue(newObj)
			if (handled(old) || handled(svc)) && !equality.Semantic.DeepEqual(old.Spec, svc.Spec) {
				r.enqueueAll()
			}
		},
		DeleteFunc: func(obj any) {
			r.enqueue(obj)
			r.enqueueAll()
		},
	}); err != nil {
		return fmt.Errorf("watch services: %w", err)
	}
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { r.enqueueAll() },
		UpdateFunc: func(oldObj, newObj any) {
			if nodeChanged(oldObj.(*corev1.Node), newObj.(*corev1.Node)) {
				r.enqueueAll()
			}
		},
		DeleteFunc: func(any) { r.enqueueAll() },
	}); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}

	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if err := factory.WaitForCacheSyncWithContext(ctx).AsError(); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("fill the caches of services and nodes: %w", err)
	}
	ready()

	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	for r.next(ctx) {
	}
	return nil
}

// note identifies a warning given about a service, to give it once.
type note struct {
	key    string
	reason string
}

// run is the state of one Run. Only the single worker touches given and
// warned.
type run struct {
	client   kubernetes.Interface
	log      *slog.Logger
	services listerscorev1.ServiceLister
	nodes    listerscorev1.NodeLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	// given holds the ingress this controller set, by service.
	given map[string][]corev1.LoadBalancerIngress
	// warned holds the last message of each warning given.
	warned map[note]string
}

func (r *run) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		r.log.Warn("service without a key", "err", err)
		return
	}
	r.queue.Add(key)
}

// enqueueAll queues every service this controller serves.
func (r *run) enqueueAll() {
	all, err := r.services.List(labels.Everything())
	if err != nil {
		r.log.Warn("cannot list services", "err", err)
		return
	}
	for _, svc := range all {
		if handled(svc) {
			r.queue.Add(keyOf(svc))
		}
	}
}

// next syncs one queued service; false once the queue is shut down.
func (r *run) next(ctx context.Context) bool {
	key, shutdown := r.queue.Get()
	if shutdown {
		return false
	}
	defer r.queue.Done(key)
	if ctx.Err() != nil {
		return true
	}
	err := r.sync(ctx, key)
	switch {
	case err == nil:
		r.queue.Forget(key)
	case ctx.Err() != nil:
	default:
		level := slog.LevelWarn
		if apierrors.IsConflict(err) {
			// The cache was behind the API; the retry reads the new version.
			level = slog.LevelDebug
		}
		r.log.Log(ctx, level, "service not updated; will retry", "service", key, "err", err)
		r.queue.AddRateLimited(key)
	}
	return true
}

// sync makes one service's status what it should be.
func (r *run) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := r.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		r.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if !handled(svc) {
		return r.release(ctx, svc)
	}

	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	all, err := r.services.List(labels.Everything())
	if err != nil {
		return err
	}
	var claims []Claim
	var addrs []string
	ipIgnored := false
	for _, s := range all {
		if !handled(s) {
			continue
		}
		a, ignored := pick(s, NodeAddresses(nodes, s.Spec.IPFamilies))
		claims = append(claims, Claim{Service: s, Addresses: a})
		if keyOf(s) == key {
			addrs, ipIgnored = a, ignored
		}
	}

	if ipIgnored {
		r.warn(svc, ReasonLoadBalancerIPIgnored, fmt.Sprintf("spec.loadBalancerIP %s is not the address of a node that serves load balancers; using all of them", svc.Spec.LoadBalancerIP))
	} else {
		r.unwarn(key, ReasonLoadBalancerIPIgnored)
	}
	conflict, waits := ResolveConflicts(claims)[key]
	if waits {
		addrs = nil
		r.warn(svc, ReasonPortInUse, fmt.Sprintf("no address: %s", conflict))
	} else {
		r.unwarn(key, ReasonPortInUse)
	}

	want := ingressOf(addrs)
	if !sameIngress(svc.Status.LoadBalancer.Ingress, want) {
		if err := r.setIngress(ctx, svc, want); err != nil {
			return err
		}
		if waits {
			r.log.Info("load balancer addresses changed", "service", key, "addresses", addrs, "waits", conflict.String())
		} else {
			r.log.Info("load balancer addresses changed", "service", key, "addresses", addrs)
		}
	}
	r.given[key] = want
	return nil
}

// release clears the ingress of a service this controller no longer serves,
// but only when it still holds exactly what this controller set.
func (r *run) release(ctx context.Context, svc *corev1.Service) error {
	key := keyOf(svc)
	given, ok := r.given[key]
	if !ok {
		return nil
	}
	if len(given) > 0 && sameIngress(svc.Status.LoadBalancer.Ingress, given) {
		if err := r.setIngress(ctx, svc, nil); err != nil {
			return err
		}
		r.log.Info("load balancer addresses removed", "service", key)
	}
	r.forget(key)
	return nil
}

func (r *run) setIngress(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress) error {
	svc = svc.DeepCopy()
	svc.Status.LoadBalancer.Ingress = ingress
	_, err := r.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	return err
}

func (r *run) forget(key string) {
	delete(r.given, key)
	r.unwarn(key, ReasonPortInUse)
	r.unwarn(key, ReasonLoadBalancerIPIgnored)
}

// warn records a Warning event, unless the same one was the last given.
func (r *run) warn(svc *corev1.Service, reason, msg string) {
	n := note{keyOf(svc), reason}
	if r.warned[n] == msg {
		return
	}
	r.warned[n] = msg
	r.recorder.Event(svc, corev1.EventTypeWarning, reason, msg)
}

func (r *run) unwarn(key, reason string) {
	delete(r.warned, note{key, reason})
}

func ingressOf(addrs []string) []corev1.LoadBalancerIngress {
	if len(addrs) == 0 {
		return nil
	}
	out := make([]corev1.LoadBalancerIngress, len(addrs))
	for i, a := range addrs {
		mode := corev1.LoadBalancerIPModeVIP
		out[i] = corev1.LoadBalancerIngress{IP: a, IPMode: &mode}
	}
	return out
}

// sameIngress compares ingress lists; nil and empty are the same.
func sameIngress(a, b []corev1.LoadBalancerIngress) bool {
	return len(a) == len(b) && (len(a) == 0 || equality.Semantic.DeepEqual(a, b))
}

// nodeChanged tells whether a node update can change any service's
// addresses.
func nodeChanged(old, n *corev1.Node) bool {
	return nodeReady(old) != nodeReady(n) ||
		old.Labels[EnableLBLabel] != n.Labels[EnableLBLabel] ||
		hasLabel(old, corev1.LabelNodeExcludeBalancers) != hasLabel(n, corev1.LabelNodeExcludeBalancers) ||
		!slices.Equal(old.Status.Addresses, n.Status.Addresses)
}

func hasLabel(n *corev1.Node, label string) bool {
	_, ok := n.Labels[label]
	return ok
}
