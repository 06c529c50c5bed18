package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
)

func TestClosest(t *testing.T) {
	names := []string{"kafka", "mariadb", "mysql", "nginx", "postgresql", "redis", "tomcat", "wordpress"}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"mysq", []string{"mysql"}},
		{"mysql8", []string{"mysql"}},
		{"postgres", []string{"postgresql"}},
		{"redsi", []string{"redis"}},
		{"wordpres", []string{"wordpress"}},
		{"oracle", nil},
	} {
		if got := closest(tc.in, names); !slices.Equal(got, tc.want) {
			t.Errorf("closest(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestLoadAppUnknown(t *testing.T) {
	_, err := LoadApp("mysq")
	if !errors.Is(err, ErrUnknownApp) || !strings.Contains(err.Error(), "did you mean mysql?") || !strings.Contains(err.Error(), "kasa apps") {
		t.Errorf("LoadApp(mysq) = %v", err)
	}
	if _, err := LoadApp("traefik"); !errors.Is(err, ErrUnknownApp) {
		t.Errorf("the system chart traefik is offered as an app: %v", err)
	}
	ch, err := LoadApp("mysql")
	if err != nil || ch.Metadata.Name != "mysql" {
		t.Errorf("LoadApp(mysql) = %v", err)
	}
}

func TestValues(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	if err := os.WriteFile(a, []byte("persistence:\n  size: 1Gi\n  enabled: true\nreplicas: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("persistence:\n  size: 2Gi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	web := &chart.Chart{Metadata: &chart.Metadata{Name: "nginx", Annotations: map[string]string{"kasa.io/http": "true"}}}
	got, err := ValueOptions{Files: []string{a, b}, Set: []string{"replicas=3", "persistence.size=5Gi"}, IngressHost: "shop.example"}.Values(web)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"persistence": map[string]any{"size": "5Gi", "enabled": true},
		"replicas":    int64(3),
		"ingress":     map[string]any{"host": "shop.example"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values = %#v\nwant %#v", got, want)
	}

	db := &chart.Chart{Metadata: &chart.Metadata{Name: "mysql"}}
	for _, tc := range []struct {
		opts ValueOptions
		want string
	}{
		{ValueOptions{IngressHost: "db.example"}, "mysql does not serve HTTP"},
		{ValueOptions{Files: []string{filepath.Join(dir, "missing.yaml")}}, "missing.yaml"},
		{ValueOptions{Set: []string{"a=b,c"}}, "--set a=b,c"},
	} {
		if _, err := tc.opts.Values(db); !errors.Is(err, ErrInvalidValues) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Values(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
}

func TestPlainMessage(t *testing.T) {
	a := plainMessage(`Startup probe errored: failed to start exec "d11cbb607867ece4b5f8e5a25d65f1d1fd4fed701f2a458a9288e12f16fe5546": not found`)
	b := plainMessage(`(combined from similar events): Startup probe errored: failed to start exec "cb41ab9e923329436a2a29c9e1d10478eadc6e8419f39bf6ebae1548c33fb289": not found`)
	if a != b || strings.Contains(a, "d11cbb") {
		t.Errorf("repeats differ: %q and %q", a, b)
	}
}
