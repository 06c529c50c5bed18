package helmcontroller

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The resources, as k3s names them.
var (
	ChartGVR  = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmcharts"}
	ConfigGVR = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmchartconfigs"}
)

// Finalizer holds a HelmChart until its release is uninstalled.
const Finalizer = "kasa.io/helm-controller"

// Failure policies: reinstall uninstalls a failed release and installs it
// again; abort leaves it for a person to look at.
const (
	PolicyReinstall = "reinstall"
	PolicyAbort     = "abort"
)

// ChartSpec is HelmChart's spec (k3s's field names).
type ChartSpec struct {
	Chart           string                        `json:"chart,omitempty"`
	ChartContent    string                        `json:"chartContent,omitempty"`
	Repo            string                        `json:"repo,omitempty"`
	RepoCA          string                        `json:"repoCA,omitempty"`
	Version         string                        `json:"version,omitempty"`
	TargetNamespace string                        `json:"targetNamespace,omitempty"`
	CreateNamespace bool                          `json:"createNamespace,omitempty"`
	ValuesContent   string                        `json:"valuesContent,omitempty"`
	Set             map[string]intstr.IntOrString `json:"set,omitempty"`
	Timeout         string                        `json:"timeout,omitempty"`
	FailurePolicy   string                        `json:"failurePolicy,omitempty"`
}

// ChartStatus is HelmChart's status.
type ChartStatus struct {
	ObservedGeneration int64       `json:"observedGeneration,omitempty"`
	ReleaseRevision    int         `json:"releaseRevision,omitempty"`
	ChartVersion       string      `json:"chartVersion,omitempty"`
	AppliedHash        string      `json:"appliedHash,omitempty"`
	Conditions         []Condition `json:"conditions,omitempty"`
}

// Condition types: Ready is True once the release of the current spec is
// deployed; Failed is True with Helm's error while it is not.
const (
	ConditionReady  = "Ready"
	ConditionFailed = "Failed"
)

// Condition is one entry of status.conditions.
type Condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	LastTransitionTime string `json:"lastTransitionTime,omitempty"`
}

// ConfigSpec is HelmChartConfig's spec: values laid over those of the
// HelmChart of the same name and namespace.
type ConfigSpec struct {
	ValuesContent string `json:"valuesContent,omitempty"`
	FailurePolicy string `json:"failurePolicy,omitempty"`
}
