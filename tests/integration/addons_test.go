//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestIntegrationDisableAddon: CoreDNS is deployed by default;
// --disable coredns removes it and it stays removed across a restart;
// dropping the flag brings it back. A manifest dropped into the folder is
// applied, a .skip file is not, a malformed one is reported by name.
func TestIntegrationDisableAddon(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	c := client(t, s)
	present := func() error {
		_, err := c.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		return err
	}
	absent := func() error {
		err := present()
		if err == nil {
			return errors.New("coredns still deployed")
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	eventually(t, 30*time.Second, present)

	restart := func(args ...string) *kubernetes.Clientset {
		t.Helper()
		if _, err := s.Stop(15 * time.Second); err != nil {
			t.Fatal(err)
		}
		s.ExtraArgs = args
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitReady(readyTimeout); err != nil {
			t.Fatal(err)
		}
		return client(t, s)
	}
	c = restart("--disable", "coredns")
	eventually(t, 30*time.Second, absent)
	if _, err := os.Stat(filepath.Join(s.DataDir, "server/manifests/coredns.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("coredns.yaml still in the manifests folder: %v", err)
	}
	c = restart("--disable", "coredns")
	// Stays gone: give the deploy component a few passes.
	time.Sleep(6 * time.Second)
	if err := absent(); err != nil {
		t.Fatal(err)
	}
	c = restart()
	eventually(t, 30*time.Second, present)

	// A manifest dropped into the folder is applied; a .skip one is not.
	dir := filepath.Join(s.DataDir, "server/manifests")
	cm := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: default\ndata:\n  k: v\n", name)
	}
	if err := os.WriteFile(filepath.Join(dir, "mine.yaml"), []byte(cm("dropped")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.yaml.skip"), []byte(cm("skipped")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("kind: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		_, err := c.CoreV1().ConfigMaps("default").Get(ctx, "dropped", metav1.GetOptions{})
		return err
	})
	if _, err := c.CoreV1().ConfigMaps("default").Get(ctx, "skipped", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the .skip manifest was applied: %v", err)
	}
	eventually(t, 20*time.Second, func() error {
		if log := s.LogTail(300); !strings.Contains(log, "manifest not applied") || !strings.Contains(log, "broken.yaml") {
			return errors.New("the malformed manifest is not reported by name")
		}
		return nil
	})
}
