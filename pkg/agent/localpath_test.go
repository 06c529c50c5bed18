package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

func claim(modes ...v1.PersistentVolumeAccessMode) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "db"},
		Spec: v1.PersistentVolumeClaimSpec{AccessModes: modes,
			Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}}},
	}
}

func TestLocalPathProvisionAndDelete(t *testing.T) {
	dir := t.TempDir()
	l := &LocalPath{NodeName: "n1", Dir: dir}
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}}
	ctx := context.Background()

	pv, _, err := l.Provision(ctx, controller.ProvisionOptions{StorageClass: class, PVName: "pvc-1", PVC: claim(v1.ReadWriteOnce), SelectedNodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(pv.Spec.HostPath.Path); err != nil || !st.IsDir() {
		t.Fatalf("folder %s: %v", pv.Spec.HostPath.Path, err)
	}
	if nodeOf(pv) != "n1" || pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimDelete {
		t.Fatalf("pv: node %q reclaim %s", nodeOf(pv), pv.Spec.PersistentVolumeReclaimPolicy)
	}

	// Another node's claims and volumes are not this node's business.
	other := &LocalPath{NodeName: "n2", Dir: dir}
	var ignored *controller.IgnoredError
	if _, _, err := other.Provision(ctx, controller.ProvisionOptions{StorageClass: class, PVName: "pvc-2", PVC: claim(v1.ReadWriteOnce), SelectedNodeName: "n1"}); !errors.As(err, &ignored) {
		t.Fatalf("another node provisioned: %v", err)
	}
	if err := other.Delete(ctx, pv); !errors.As(err, &ignored) {
		t.Fatalf("another node deleted: %v", err)
	}

	if err := l.Delete(ctx, pv); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pv.Spec.HostPath.Path); !os.IsNotExist(err) {
		t.Fatal("the folder is still there")
	}

	// A volume whose path lies outside the storage folder is never removed.
	pv.Spec.HostPath.Path = filepath.Dir(dir)
	if err := l.Delete(ctx, pv); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("got %v", err)
	}
}

func TestLocalPathRefusals(t *testing.T) {
	l := &LocalPath{NodeName: "n1", Dir: t.TempDir()}
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}}
	for name, o := range map[string]controller.ProvisionOptions{
		"ReadWriteMany":        {StorageClass: class, PVName: "a", PVC: claim(v1.ReadWriteMany), SelectedNodeName: "n1"},
		"WaitForFirstConsumer": {StorageClass: class, PVName: "b", PVC: claim(v1.ReadWriteOnce)},
	} {
		if _, state, err := l.Provision(context.Background(), o); !errors.Is(err, errUnsupported) || state != controller.ProvisioningFinished {
			t.Errorf("%s: got %v %v", name, state, err)
		}
	}
}
