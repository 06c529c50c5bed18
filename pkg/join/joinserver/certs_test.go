package joinserver

import (
	"net"
	"slices"
	"testing"

	"github.com/kasa-io/kasa/pkg/join"
)

func TestRequestedCerts(t *testing.T) {
	ips := []net.IP{net.ParseIP("192.0.2.7")}
	for _, tc := range []struct {
		name string
		keys []string
		want []string
	}{
		{"this kasa's agent", []string{"client-kubelet", "serving-kubelet", "client-kube-proxy"},
			[]string{"client-kubelet", "serving-kubelet", "client-kube-proxy"}},
		{"an earlier agent", []string{"client-kubelet", "serving-kubelet", "client-kube-proxy", "client-flannel", "client-local-path"},
			[]string{"client-kubelet", "serving-kubelet", "client-kube-proxy", "client-flannel", "client-local-path"}},
		{"an unknown name", []string{"client-kubelet", "serving-kubelet", "client-kube-proxy", "client-admin"},
			[]string{"client-kubelet", "serving-kubelet", "client-kube-proxy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := map[string]string{}
			for _, k := range tc.keys {
				keys[k] = "key"
			}
			var got []string
			for _, l := range requestedCerts("n1", ips, keys) {
				got = append(got, join.CertName(l))
				if l.CommonName == "system:kasa-flannel" || l.CommonName == "system:kasa-local-path" {
					t.Errorf("%s is for the shared identity %s", join.CertName(l), l.CommonName)
				}
				if slices.Contains(legacyCerts, join.CertName(l)) {
					if l.CommonName != "system:node:n1" || !slices.Equal(l.Organization, []string{"system:nodes"}) || !l.Client || l.Server {
						t.Errorf("%s: %+v, want the node's own client identity", join.CertName(l), l)
					}
					if l.KeyFile != join.CertName(l)+".key" {
						t.Errorf("%s: key file %s", join.CertName(l), l.KeyFile)
					}
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("certificates %v, want %v", got, tc.want)
			}
		})
	}
}
