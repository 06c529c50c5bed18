package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// histograms is apiserver_request_duration_seconds as the API server's
// /metrics shows it: per verb and resource ("PATCH pods/status"), each
// bucket's upper bound and cumulative count, summed over scopes and
// components.
type histograms map[string]map[float64]float64

// scrape reads the API server's request latency histograms.
func scrape(ctx context.Context, cs kubernetes.Interface) (histograms, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	return parse(string(raw)), nil
}

// parse takes the buckets of apiserver_request_duration_seconds from
// Prometheus' text format.
func parse(text string) histograms {
	h := histograms{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, "apiserver_request_duration_seconds_bucket{")
		if !ok {
			continue
		}
		end := strings.LastIndexByte(rest, '}')
		if end < 0 {
			continue
		}
		labels, value := rest[:end], strings.TrimSpace(rest[end+1:])
		verb, le := label(labels, "verb"), label(labels, "le")
		count, err := strconv.ParseFloat(value, 64)
		if err != nil || verb == "" || le == "" {
			continue
		}
		key := verb + " " + label(labels, "resource")
		if sub := label(labels, "subresource"); sub != "" {
			key += "/" + sub
		}
		bound := math.Inf(1)
		if le != "+Inf" {
			if bound, err = strconv.ParseFloat(le, 64); err != nil {
				continue
			}
		}
		if h[key] == nil {
			h[key] = map[float64]float64{}
		}
		h[key][bound] += count
	}
	return h
}

// label is one label's value in a metric's label set.
func label(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// minus is what was counted between an earlier scrape and this one.
func (h histograms) minus(earlier histograms) histograms {
	d := histograms{}
	for key, buckets := range h {
		d[key] = map[float64]float64{}
		for b, c := range buckets {
			d[key][b] = c - earlier[key][b]
		}
	}
	return d
}

// The verb classes of the upstream SLOs; WATCH and CONNECT have none.
func isGet(v string) bool  { return v == "GET" }
func isList(v string) bool { return v == "LIST" }
func isWrite(v string) bool {
	switch v {
	case "POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION":
		return true
	}
	return false
}

// merged sums the buckets of the verbs that class takes.
func (h histograms) merged(class func(string) bool) (bounds []float64, counts []float64) {
	sum := map[float64]float64{}
	for key, buckets := range h {
		if verb, _, _ := strings.Cut(key, " "); class(verb) {
			for b, c := range buckets {
				sum[b] += c
			}
		}
	}
	for b := range sum {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	for _, b := range bounds {
		counts = append(counts, sum[b])
	}
	return bounds, counts
}

func (h histograms) count(class func(string) bool) int {
	_, counts := h.merged(class)
	if len(counts) == 0 {
		return 0
	}
	return int(counts[len(counts)-1])
}

// worst is the n kinds of request of the class ("PATCH pods/status") with
// the highest p99, each with its count: where a class's latency comes from.
func (h histograms) worst(class func(string) bool, n int) []string {
	type kind struct {
		key   string
		p99   float64
		count int
	}
	var kinds []kind
	for key := range h {
		one := histograms{key: h[key]}
		if c := one.count(class); c > 0 {
			kinds = append(kinds, kind{key, one.quantiles(class).P99, c})
		}
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].p99 > kinds[j].p99 })
	var out []string
	for i := 0; i < len(kinds) && i < n; i++ {
		out = append(out, fmt.Sprintf("%s p99 %.3f s (%d)", kinds[i].key, kinds[i].p99, kinds[i].count))
	}
	return out
}

func (h histograms) quantiles(class func(string) bool) latency {
	bounds, counts := h.merged(class)
	return latency{P50: quantile(0.5, bounds, counts), P99: quantile(0.99, bounds, counts)}
}

// quantile interpolates within the bucket where the q-th request falls,
// as Prometheus' histogram_quantile does; in the last, open bucket it
// answers the largest finite bound (a floor, said as such by the table).
func quantile(q float64, bounds, counts []float64) float64 {
	if len(counts) == 0 || counts[len(counts)-1] == 0 {
		return math.NaN()
	}
	rank := q * counts[len(counts)-1]
	for i, c := range counts {
		if c < rank {
			continue
		}
		if math.IsInf(bounds[i], 1) {
			if i == 0 {
				return math.NaN()
			}
			return bounds[i-1]
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = bounds[i-1], counts[i-1]
		}
		if c == below {
			return bounds[i]
		}
		return lower + (bounds[i]-lower)*(rank-below)/(c-below)
	}
	return bounds[len(bounds)-1]
}
