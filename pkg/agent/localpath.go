package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/kasa-io/kasa/pkg/component"
)

// LocalPathProvisioner is the provisioner name of the local-path class.
const LocalPathProvisioner = "kasa.io/local-path"

// LocalPath provisions PersistentVolumes as folders on this node. Every node
// runs one, and each acts only for the claims the scheduler placed on it
// (and the volumes that live on it), so the folder work always happens on
// the node that holds the volume, with no helper pod or image.
type LocalPath struct {
	NodeName string
	// Dir holds the volumes (--default-local-storage-path).
	Dir string
	// Client acts as the node (system:node:<NodeName>): manifests/rbac.yaml
	// lets nodes make and remove volumes, and its admission policy only
	// those that Provision makes for this node.
	Client kubernetes.Interface
}

var (
	_ component.Component    = (*LocalPath)(nil)
	_ controller.Provisioner = (*LocalPath)(nil)
)

// Name implements component.Component.
func (l *LocalPath) Name() string { return "local-path" }

// Run implements component.Component.
func (l *LocalPath) Run(ctx context.Context, ready func()) error {
	if err := os.MkdirAll(l.Dir, 0o711); err != nil {
		return err
	}
	pc := controller.NewProvisionController(ctx, l.Client, LocalPathProvisioner, l,
		controller.LeaderElection(false),
		controller.FailedProvisionThreshold(0),
		controller.FailedDeleteThreshold(0),
	)
	ready()
	pc.Run(ctx)
	return nil
}

// errUnsupported marks a claim local-path volumes cannot serve.
var errUnsupported = errors.New("unsupported claim")

// Provision implements controller.Provisioner.
func (l *LocalPath) Provision(_ context.Context, o controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	if o.SelectedNodeName == "" {
		return nil, controller.ProvisioningFinished, fmt.Errorf("%w: local-path volumes need the class's volumeBindingMode WaitForFirstConsumer, so that the pod's node is known", errUnsupported)
	}
	if o.SelectedNodeName != l.NodeName {
		return nil, controller.ProvisioningFinished, &controller.IgnoredError{Reason: "the claim is for node " + o.SelectedNodeName}
	}
	for _, m := range o.PVC.Spec.AccessModes {
		if m == v1.ReadWriteMany || m == v1.ReadOnlyMany {
			return nil, controller.ProvisioningFinished, fmt.Errorf("%w: a local-path volume lives on one node, so it cannot be %s; ask for ReadWriteOnce", errUnsupported, m)
		}
	}
	dir := filepath.Join(l.Dir, fmt.Sprintf("%s_%s_%s", o.PVName, o.PVC.Namespace, o.PVC.Name))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	// Any user of the pod may write, whatever the image's user; the data dir
	// above it keeps others on the host out.
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if o.StorageClass.ReclaimPolicy != nil {
		reclaim = *o.StorageClass.ReclaimPolicy
	}
	hostPathType := v1.HostPathDirectoryOrCreate
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: o.PVName},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   o.PVC.Spec.AccessModes,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: o.PVC.Spec.Resources.Requests[v1.ResourceStorage]},
			StorageClassName:              o.StorageClass.Name,
			PersistentVolumeSource: v1.PersistentVolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: v1.NodeSelectorOpIn, Values: []string{l.NodeName},
				}},
			}}}},
		},
	}, controller.ProvisioningFinished, nil
}

// Delete implements controller.Provisioner: it removes the volume's folder
// when the volume lives on this node.
func (l *LocalPath) Delete(_ context.Context, pv *v1.PersistentVolume) error {
	if nodeOf(pv) != l.NodeName {
		return &controller.IgnoredError{Reason: "the volume lives on node " + nodeOf(pv)}
	}
	if pv.Spec.HostPath == nil {
		return fmt.Errorf("volume %s has no host path", pv.Name)
	}
	path := filepath.Clean(pv.Spec.HostPath.Path)
	if !strings.HasPrefix(path, filepath.Clean(l.Dir)+string(filepath.Separator)) {
		return fmt.Errorf("volume %s's path %s is outside %s; not removing it", pv.Name, path, l.Dir)
	}
	return os.RemoveAll(path)
}

// nodeOf returns the node a local-path volume is pinned to.
func nodeOf(pv *v1.PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, t := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, e := range t.MatchExpressions {
			if e.Key == "kubernetes.io/hostname" && e.Operator == v1.NodeSelectorOpIn && len(e.Values) == 1 {
				return e.Values[0]
			}
		}
	}
	return ""
}
