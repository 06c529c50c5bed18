package helmcontroller

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// chartArchive packs files into a chart archive (.tgz) under dir/.
func chartArchive(t *testing.T, dir string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: dir + "/" + name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestValuesLayers(t *testing.T) {
	spec := ChartSpec{
		ValuesContent: "a: 1\nnested:\n  keep: x\n  over: chart\n",
		Set: map[string]intstr.IntOrString{
			"nested.set":  intstr.FromString("007"),
			"replicas":    intstr.FromInt32(3),
			"nested.over": intstr.FromString("set"),
		},
	}
	config := ConfigSpec{ValuesContent: "nested:\n  over: config\n  added: true\n"}
	got, err := values(spec, config)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a":        float64(1),
		"replicas": int64(3),
		"nested":   map[string]any{"keep": "x", "over": "set", "added": true, "set": "007"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values = %#v\nwant %#v", got, want)
	}
	if _, err := values(ChartSpec{ValuesContent: "a: [1"}, ConfigSpec{}); err == nil || !strings.Contains(err.Error(), "spec.valuesContent") {
		t.Errorf("malformed valuesContent: %v", err)
	}
	if _, err := values(ChartSpec{}, ConfigSpec{ValuesContent: "b: {"}); err == nil || !strings.Contains(err.Error(), "HelmChartConfig") {
		t.Errorf("malformed HelmChartConfig values: %v", err)
	}
}

func TestLoadChart(t *testing.T) {
	h := &helm{stateDir: t.TempDir()}
	tgz := chartArchive(t, "hello", map[string]string{
		"Chart.yaml":               "apiVersion: v2\nname: hello\nversion: 0.1.0\n",
		"values.yaml":              "greeting: hi\n",
		"templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  greeting: {{ .Values.greeting }}\n",
	})
	ch, err := h.loadChart(ChartSpec{ChartContent: base64.StdEncoding.EncodeToString(tgz)})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Name != "hello" || len(ch.Templates) != 1 {
		t.Errorf("chartContent loaded as %s with %d templates", ch.Metadata.Name, len(ch.Templates))
	}
	ch, err = h.loadChart(ChartSpec{Chart: "traefik"})
	if err != nil || ch.Metadata.Name != "traefik" {
		t.Fatalf("embedded traefik: %v", err)
	}
	for _, tc := range []struct {
		spec ChartSpec
		want string
	}{
		{ChartSpec{}, "spec.chart or spec.chartContent"},
		{ChartSpec{ChartContent: "not base64!"}, "not base64"},
		{ChartSpec{ChartContent: base64.StdEncoding.EncodeToString([]byte("not a tgz"))}, "spec.chartContent"},
		{ChartSpec{Chart: "no-such-chart"}, "spec.repo"},
		{ChartSpec{Chart: "traefik", Version: "0.0.1"}, "not 0.0.1"},
		// Nothing listens on port 1: the repository cannot be reached.
		{ChartSpec{Chart: "nginx", Repo: "http://127.0.0.1:1/charts"}, "http://127.0.0.1:1/charts"},
	} {
		if _, err := h.loadChart(tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("loadChart(%+v) = %v, want an error with %q", tc.spec, err, tc.want)
		}
	}
}

func TestDigest(t *testing.T) {
	h := &helm{stateDir: t.TempDir()}
	ch, err := h.loadChart(ChartSpec{Chart: "traefik"})
	if err != nil {
		t.Fatal(err)
	}
	base, err := digest(ch, map[string]any{"a": 1}, "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	same, _ := digest(ch, map[string]any{"a": 1}, "kube-system")
	otherValues, _ := digest(ch, map[string]any{"a": 2}, "kube-system")
	otherNS, _ := digest(ch, map[string]any{"a": 1}, "default")
	ch.Templates[0].Data = append(ch.Templates[0].Data, '\n')
	ch.Raw[0].Data = append(ch.Raw[0].Data, '\n')
	otherChart, _ := digest(ch, map[string]any{"a": 1}, "kube-system")
	if base != same {
		t.Error("the digest of the same release differs")
	}
	for what, d := range map[string]string{"values": otherValues, "namespace": otherNS, "chart files": otherChart} {
		if d == base {
			t.Errorf("a change of %s leaves the digest as it was", what)
		}
	}
}
