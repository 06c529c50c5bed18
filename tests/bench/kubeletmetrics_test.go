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
rest_client_rate_limiter_duration_seconds_sum{host="a",verb="PATCH"} 1
rest_client_rate_limiter_duration_seconds_count{host="a",verb="PATCH"} 10
`)
	after := parseStageTimes(`kubelet_runtime_operations_duration_seconds_sum{operation_type="run_podsandbox"} 12
kubelet_runtime_operations_duration_seconds_count{operation_type="run_podsandbox"} 8
kubelet_runtime_operations_duration_seconds_sum{operation_type="list_containers"} 200
kubelet_runtime_operations_duration_seconds_count{operation_type="list_containers"} 2000
rest_client_rate_limiter_duration_seconds_sum{host="a",verb="PATCH"} 3
rest_client_rate_limiter_duration_seconds_count{host="a",verb="PATCH"} 20
rest_client_rate_limiter_duration_seconds_sum{host="b",verb="GET"} 2
rest_client_rate_limiter_duration_seconds_count{host="b",verb="GET"} 10
`)
	got, err := after.since(before)
	if err != nil {
		t.Fatal(err)
	}
	want := "sandbox (runc, CNI) 2.50 s (4), API client rate limiter wait 0.20 s (20)"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := before.since(before); err == nil || !strings.Contains(err.Error(), "no pod start") {
		t.Errorf("no change: %v", err)
	}
}
