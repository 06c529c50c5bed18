// Package deploy applies the manifests in <data-dir>/server/manifests: the
// system add-ons kasa writes there and any file a user drops in. Files are
// applied at start and again when they change; a file named *.skip (or
// whose name ends in .skip after the extension) is left alone. A file that
// fails is reported with its name; the others are still applied.
package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/kasa-io/kasa/pkg/component"
)

// FieldManager owns the fields kasa applies.
const FieldManager = "kasa"

// Deployer is the manifests component.
type Deployer struct {
	Dir string
	// RESTConfig reaches the API server as admin.
	RESTConfig *rest.Config
	// Interval between scans of the folder; 5 s when zero.
	Interval time.Duration
	// Remove holds the manifests of disabled add-ons, by name: their objects
	// are deleted at start, so a disabled add-on stays gone.
	Remove map[string][]byte
	// Retired holds objects of earlier kasa versions, deleted at start
	// too, so that an upgraded cluster keeps none of them.
	Retired []byte
	Log     *slog.Logger
}

var _ component.Component = (*Deployer)(nil)

// Name implements component.Component.
func (d *Deployer) Name() string { return "deploy" }

// Run implements component.Component: ready after the first pass over the
// folder, whatever its outcome (errors are logged per file).
func (d *Deployer) Run(ctx context.Context, ready func()) error {
	a, err := newApplier(d.RESTConfig)
	if err != nil {
		return err
	}
	for name, data := range d.Remove {
		if err := a.deleteAll(ctx, data); err != nil {
			d.Log.Error("disabled add-on not fully removed", "addon", name, "err", err)
		} else {
			d.Log.Info("disabled add-on removed", "addon", name)
		}
	}
	if err := a.deleteAll(ctx, d.Retired); err != nil {
		d.Log.Error("objects of an earlier kasa not fully removed; the next start tries again", "err", err)
	}
	applied := map[string][32]byte{}
	component.Periodic(ctx, d.Interval, ready, func() { d.pass(ctx, a, applied) })
	return nil
}

// Skipped reports whether a file in the folder is not to be applied.
func Skipped(name string) bool {
	if strings.HasSuffix(name, ".skip") || strings.HasPrefix(name, ".") {
		return true
	}
	ext := filepath.Ext(name)
	return ext != ".yaml" && ext != ".yml" && ext != ".json"
}

// pass applies each file whose content changed since its last success.
func (d *Deployer) pass(ctx context.Context, a *applier, applied map[string][32]byte) {
	entries, err := os.ReadDir(d.Dir)
	if err != nil {
		d.Log.Error("cannot read the manifests folder", "dir", d.Dir, "err", err)
		return
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && !Skipped(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		file := filepath.Join(d.Dir, name)
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		sum := sha256.Sum256(data)
		if applied[file] == sum {
			continue
		}
		if err := a.applyAll(ctx, data); err != nil {
			if ctx.Err() == nil {
				d.Log.Error("manifest not applied", "file", file, "err", err)
			}
			continue
		}
		applied[file] = sum
		d.Log.Info("applied manifest", "file", file)
	}
}

type applier struct {
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
}

// Apply server-side applies every object of a multi-document YAML or JSON
// manifest, as the manifests folder's files are applied.
func Apply(ctx context.Context, rc *rest.Config, data []byte) error {
	a, err := newApplier(rc)
	if err != nil {
		return err
	}
	return a.applyAll(ctx, data)
}

func newApplier(rc *rest.Config) (*applier, error) {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}, nil
}

// applyAll server-side applies every object of a multi-document YAML or
// JSON file.
func (a *applier) applyAll(ctx context.Context, data []byte) error {
	return a.each(data, func(r dynamic.ResourceInterface, u *unstructured.Unstructured) error {
		_, err := r.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		return err
	})
}

// deleteAll deletes every object of a file; objects already gone are fine.
func (a *applier) deleteAll(ctx context.Context, data []byte) error {
	return a.each(data, func(r dynamic.ResourceInterface, u *unstructured.Unstructured) error {
		policy := metav1.DeletePropagationBackground
		err := r.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// each calls f for every object of a multi-document file, with the client of
// its resource; it goes on after a failed object and returns every failure.
func (a *applier) each(data []byte, f func(dynamic.ResourceInterface, *unstructured.Unstructured) error) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var errs []error
	for i := 1; ; i++ {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("document %d: %w", i, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		r, err := a.resource(&u)
		if err == nil {
			err = f(r, &u)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d (%s %s): %w", i, u.GetKind(), u.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// resource finds the client of an object's resource, in its namespace.
func (a *applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		a.mapper.Reset() // a CRD may have appeared since
		if m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, err
		}
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource), nil
	}
	ns := u.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	return a.dyn.Resource(m.Resource).Namespace(ns), nil
}
