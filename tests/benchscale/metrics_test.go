package main

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

const sample = `# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1",le="0.05"} 90
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1",le="0.1"} 99
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1",le="1"} 100
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1",le="+Inf"} 100
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="POST",version="v1",le="0.05"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="POST",version="v1",le="0.1"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="POST",version="v1",le="1"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="POST",version="v1",le="+Inf"} 20
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1",le="+Inf"} 7
apiserver_request_duration_seconds_count{verb="LIST"} 100
`

// TestQuantiles: the buckets of the verbs of one class are summed across
// resources, a quantile is interpolated inside its bucket, one in the open
// last bucket is the last finite bound, and an earlier scrape is taken off.
func TestQuantiles(t *testing.T) {
	h := parse(sample)
	l := h.quantiles(isList)
	if math.Abs(l.P50-0.05*50/90) > 1e-9 || math.Abs(l.P99-0.1) > 1e-9 {
		t.Errorf("LIST %+v, want p50 %.4f, p99 0.1", l, 0.05*50/90)
	}
	if w := h.quantiles(isWrite); w.P50 != 0.05 || w.P99 != 1 {
		t.Errorf("mutating %+v, want p50 0.05 (the bucket's bound), p99 1 (the open bucket's floor)", w)
	}
	if g := h.quantiles(isGet); !math.IsNaN(g.P99) {
		t.Errorf("GET with no requests: %+v", g)
	}
	if n := h.count(func(string) bool { return true }); n != 127 {
		t.Errorf("%d requests, want 127", n)
	}
	if w := h.worst(isWrite, 3); len(w) != 1 || w[0] != "POST nodes p99 1.000 s (20)" {
		t.Errorf("worst mutating: %q", w)
	}
	if w := h.worst(isList, 3); len(w) != 1 || !strings.HasPrefix(w[0], "LIST pods p99 ") {
		t.Errorf("worst LIST: %q", w)
	}
	d := h.minus(parse(sample))
	if n := d.count(isList); n != 0 {
		t.Errorf("after taking the same scrape off: %d", n)
	}
}

// TestWrite: the table goes between the marker lines and nothing else of
// the document changes; a document without them is refused, unchanged.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	doc, plot := dir+"/benchmarks.md", dir+"/scale.svg"
	before, after := "# Benchmarks\n\nother figures\n\n", "\n## Later\n\nmore\n"
	if err := os.WriteFile(doc, []byte(before+beginMark+"\nold table\n"+endMark+after), 0o644); err != nil {
		t.Fatal(err)
	}
	r := []step{{Nodes: 100, Pods: 3000, Ramp: time.Minute, Get: latency{0.01, 0.2}, List: latency{0.05, 1.5}, Write: latency{0.02, 0.4}, RSSMiB: 700, HWMMiB: 900, CPU: 1.2, DBMiB: 80}}
	if err := write(r, 30, time.Minute, doc, plot); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(doc)
	s := string(got)
	if !strings.HasPrefix(s, before+beginMark+"\n") || !strings.HasSuffix(s, endMark+after) || strings.Contains(s, "old table") ||
		!strings.Contains(s, "| 100 | 3000 | 60 s | 10 ms / 200 ms | 50 ms / 1.50 s | 20 ms / 400 ms |") || !strings.Contains(s, "](scale.svg)") {
		t.Errorf("document:\n%s", s)
	}
	if svg, err := os.ReadFile(plot); err != nil || !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "polyline") {
		t.Errorf("plot: %v\n%s", err, svg)
	}
	plain := dir + "/plain.md"
	_ = os.WriteFile(plain, []byte(before), 0o644)
	if err := write(r, 30, time.Minute, plain, ""); err == nil || !strings.Contains(err.Error(), "has no") {
		t.Errorf("a document without markers: %v", err)
	}
	if got, _ := os.ReadFile(plain); string(got) != before {
		t.Errorf("the document without markers changed:\n%s", got)
	}
}
