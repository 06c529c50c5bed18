package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// stageTimes are the sums and counts of the node's timing histograms,
// read through the API server's proxy to the kubelet's /metrics.
type stageTimes map[string]struct{ sum, count float64 }

// The stages of a pod start, each a histogram and the label that names
// the stage (empty: every series of the histogram). The pod workers' syncs
// include those that remove the pods after the burst (podStartLatency
// deletes them before it returns).
var podStages = []struct{ name, metric, label string }{
	{"sandbox (runc, CNI)", "kubelet_runtime_operations_duration_seconds", `operation_type="run_podsandbox"`},
	{"create container", "kubelet_runtime_operations_duration_seconds", `operation_type="create_container"`},
	{"start container", "kubelet_runtime_operations_duration_seconds", `operation_type="start_container"`},
	{"pod worker sync", "kubelet_pod_worker_duration_seconds", `operation_type="sync"`},
	{"pod start as the kubelet sees it", "kubelet_pod_start_sli_duration_seconds", ""},
}

func readStageTimes(ctx context.Context, c kubernetes.Interface, node string) (stageTimes, error) {
	raw, err := c.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("the kubelet's metrics: %w", err)
	}
	return parseStageTimes(string(raw)), nil
}

func parseStageTimes(text string) stageTimes {
	t := stageTimes{}
	for _, line := range strings.Split(text, "\n") {
		for _, st := range podStages {
			for _, part := range []string{"_sum", "_count"} {
				rest, ok := strings.CutPrefix(line, st.metric+part)
				if !ok || !strings.Contains(rest, st.label) {
					continue
				}
				fields := strings.Fields(rest)
				v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
				if err != nil {
					continue
				}
				e := t[st.name]
				if part == "_sum" {
					e.sum += v
				} else {
					e.count += v
				}
				t[st.name] = e
			}
		}
	}
	return t
}

// since says each stage's mean and count between an earlier reading and
// this one.
func (t stageTimes) since(before stageTimes) (string, error) {
	var parts []string
	for _, st := range podStages {
		n := t[st.name].count - before[st.name].count
		if n <= 0 {
			continue
		}
		mean := (t[st.name].sum - before[st.name].sum) / n
		parts = append(parts, fmt.Sprintf("%s %.2f s (%.0f)", st.name, mean, n))
	}
	if len(parts) == 0 {
		return "", errors.New("the kubelet's metrics counted no pod start")
	}
	return strings.Join(parts, ", "), nil
}
