package agent

import (
	"context"
	"maps"
	"path/filepath"
	"testing"
)

// TestKubeletEviction: a node evicts only when 5% of its disk is left, as
// k3s's do (upstream's 15% for images is gigabytes on a small disk and
// made CI's test hosts refuse pods); --kubelet-arg=eviction-hard replaces
// kasa's thresholds, and the next node's are kasa's again.
func TestKubeletEviction(t *testing.T) {
	dir := t.TempDir()
	c := KubeletConfig{ConfigFile: filepath.Join(dir, "kubelet.yaml"), RootDir: dir, ClusterDNS: "10.43.0.10",
		ClusterDomain: "cluster.local", RuntimeSock: "/run/k.sock", ResolvConf: "/etc/resolv.conf", CgroupV1: true}
	_, kc, err := c.load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"memory.available": "100Mi", "nodefs.available": "5%", "nodefs.inodesFree": "5%",
		"imagefs.available": "5%", "imagefs.inodesFree": "5%"}
	if !maps.Equal(kc.EvictionHard, want) {
		t.Errorf("eviction-hard %v, want %v", kc.EvictionHard, want)
	}
	if kc.EvictionMinimumReclaim["imagefs.available"] != "10%" {
		t.Errorf("eviction-minimum-reclaim %v", kc.EvictionMinimumReclaim)
	}
	c.Args = []string{"eviction-hard=memory.available<1Gi"}
	if _, kc, err = c.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(kc.EvictionHard, map[string]string{"memory.available": "1Gi"}) {
		t.Errorf("with --kubelet-arg=eviction-hard: %v", kc.EvictionHard)
	}
	if got := (KubeletConfig{}).Configuration().EvictionHard; !maps.Equal(got, want) {
		t.Errorf("the next configuration: %v", got)
	}
}
