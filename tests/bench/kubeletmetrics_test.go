package main

import (
	"strings"
	"testing"
)

// TestStageTimes: the series of a stage are summed across their other
// labels, other operations are left out, and the means are of what was
// counted between two readings.
func TestStageTimes(t *testing.T) {
	before := parseStageTimes(`kubelet_runtime_operations_duration_seconds_sum{operation_type="run_podsandbox"} 2
kubelet_runtime_operations_duration_seconds_count{operation_type="run_podsandbox"} 4
kubelet_runtime_operations_duration_seconds_sum{operation_type="list_containers"} 100
kubelet_runtime_operations_duration_seconds_count{operation_type="list_containers"} 1000
kubelet_pod_worker_duration_seconds_sum{node="n",operation_type="sync"} 1
kubelet_pod_worker_duration_seconds_count{node="n",operation_type="sync"} 10
`)
	after := parseStageTimes(`kubelet_runtime_operations_duration_seconds_sum{operation_type="run_podsandbox"} 12
kubelet_runtime_operations_duration_seconds_count{operation_type="run_podsandbox"} 8
kubelet_runtime_operations_duration_seconds_sum{operation_type="list_containers"} 200
kubelet_runtime_operations_duration_seconds_count{operation_type="list_containers"} 2000
kubelet_pod_worker_duration_seconds_sum{node="n",operation_type="sync"} 3
kubelet_pod_worker_duration_seconds_count{node="n",operation_type="sync"} 20
kubelet_pod_worker_duration_seconds_sum{node="m",operation_type="sync"} 2
kubelet_pod_worker_duration_seconds_count{node="m",operation_type="sync"} 10
kubelet_pod_worker_duration_seconds_sum{node="n",operation_type="create"} 50
kubelet_pod_worker_duration_seconds_count{node="n",operation_type="create"} 5
`)
	got, err := after.since(before)
	if err != nil {
		t.Fatal(err)
	}
	want := "sandbox (runc, CNI) 2.50 s (4), pod worker sync 0.20 s (20)"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := before.since(before); err == nil || !strings.Contains(err.Error(), "no pod start") {
		t.Errorf("no change: %v", err)
	}
}
