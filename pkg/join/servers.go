package join

import (
	"context"
	"net"
	"slices"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Servers lists the API servers' addresses from the endpoints of the
// kubernetes Service, where every kube-apiserver records its own. A join's
// answer carries them, and an agent reads them again to keep its load
// balancer's list current.
func Servers(ctx context.Context, c kubernetes.Interface) ([]string, error) {
	list, err := c.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=kubernetes",
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, es := range list.Items {
		for _, p := range es.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != "https") {
				continue
			}
			for _, ep := range es.Endpoints {
				for _, a := range ep.Addresses {
					out = append(out, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
