package up

import (
	"strings"
	"testing"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

const good = `apiVersion: kasa.io/v1alpha1
kind: Cluster
metadata:
  name: shop
spec:
  token: ${SHOP_TOKEN}
  tlsSANs: [kasa.shop.example]
  ssh:
    user: admin
    keyPath: ~/.ssh/shop
    bastion: jump@gate.example:2222
  hosts:
  - role: server
    ssh: {address: 10.0.0.1}
    installFlags: [--node-label, tier=front]
    environment: {KASA_DEBUG: "true"}
  - name: till
    role: agent
    ssh: {address: 10.0.0.2, user: pi, port: 2200, bastion: ""}
  - role: agent
    ssh: {address: 10.0.0.3}
    installFlags: ["--node-taint", "cost=$$5:NoSchedule"]
`

func TestParse(t *testing.T) {
	c, err := Parse([]byte(good), env(map[string]string{"SHOP_TOKEN": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Name != "shop" || c.Spec.Token != "s3cret" || len(c.Spec.Hosts) != 3 {
		t.Fatalf("%+v", c)
	}
	srv := c.Server()
	if srv == nil || srv.Name != "10.0.0.1" || srv.SSH.User != "admin" || srv.SSH.Port != 22 ||
		srv.SSH.KeyPath != "~/.ssh/shop" || srv.SSH.Bastion != "jump@gate.example:2222" {
		t.Errorf("server with defaults: %+v", srv)
	}
	till := c.Spec.Hosts[1]
	if till.Name != "till" || till.SSH.User != "pi" || till.SSH.Port != 2200 || till.SSH.Bastion != "jump@gate.example:2222" {
		t.Errorf("till: %+v", till)
	}
	if f := c.Spec.Hosts[2].InstallFlags[1]; f != "cost=$5:NoSchedule" {
		t.Errorf("$$ gave %q", f)
	}
}

func TestParseErrors(t *testing.T) {
	vars := env(map[string]string{"SHOP_TOKEN": "s3cret"})
	tests := []struct {
		edit func(string) string
		want string
	}{
		{func(s string) string { return s }, ""},
		{func(s string) string { return strings.Replace(s, "${SHOP_TOKEN}", "${NOPE} $ALSO_NOPE", 1) }, "environment variables not set: ALSO_NOPE, NOPE"},
		{func(s string) string { return strings.Replace(s, "kind: Cluster", "kind: Clusters", 1) }, "want apiVersion kasa.io/v1alpha1 and kind Cluster"},
		{func(s string) string {
			return strings.Replace(s, "role: agent\n    ssh: {address: 10.0.0.3}", "role: worker\n    ssh: {address: 10.0.0.3}", 1)
		}, `role "worker": want server or agent`},
		{func(s string) string { return strings.Replace(s, "10.0.0.3", "10.0.0.1", 1) }, "10.0.0.1:22 is listed twice"},
		{func(s string) string {
			return strings.Replace(s, "role: agent\n    ssh: {address: 10.0.0.3}", "role: server\n    ssh: {address: 10.0.0.3}", 1)
		}, "2 hosts have role server: several servers share an external datastore; give spec.datastoreEndpoint"},
		{func(s string) string {
			return strings.Replace(s, "  tlsSANs:", "  registrationAddress: kasa.shop:99999\n  tlsSANs:", 1)
		}, "spec.registrationAddress \"kasa.shop:99999\": the port"},
		{func(s string) string {
			return strings.Replace(s, "  tlsSANs:", "  registrationAddress: https://kasa.shop\n  tlsSANs:", 1)
		}, "want HOST or HOST:PORT"},
		{func(s string) string { return strings.Replace(s, "role: server", "role: agent", 1) }, "no host has role server"},
		{func(s string) string { return strings.Replace(s, "KASA_DEBUG", "PATH", 1) }, `environment "PATH": only KASA_*`},
		{func(s string) string { return strings.Replace(s, "port: 2200", "port: 70000", 1) }, "ssh.port 70000"},
		{func(s string) string { return strings.Replace(s, "keyPath:", "keyfile:", 1) }, `unknown field "keyfile"`},
		{func(s string) string { return strings.Replace(s, "jump@gate.example:2222", "jump@gate:xx", 1) }, `bad port "xx"`},
		{func(s string) string { return strings.Replace(s, "{address: 10.0.0.3}", "{user: x}", 1) }, "ssh.address is empty"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.edit(good)), vars)
		if tt.want == "" {
			if err != nil {
				t.Errorf("unedited: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v, want %q", err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the token: %v", err)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tt := range []struct {
		in, user, host string
		port           int
		bad            bool
	}{
		{"10.0.0.1", "root", "10.0.0.1", 22, false},
		{"pi@till", "pi", "till", 22, false},
		{"pi@till:2200", "pi", "till", 2200, false},
		{"[fd00::1]:2200", "root", "fd00::1", 2200, false},
		{"@till", "", "", 0, true},
		{"till:0", "", "", 0, true},
		{"", "", "", 0, true},
	} {
		u, h, p, err := ParseTarget(tt.in, "root", 22)
		if (err != nil) != tt.bad || u != tt.user || h != tt.host || p != tt.port {
			t.Errorf("ParseTarget(%q) = %q %q %d %v", tt.in, u, h, p, err)
		}
	}
}

// threeServers is good with three servers on a shared datastore, behind
// one address.
var threeServers = strings.Replace(strings.Replace(good, "  tlsSANs:", "  datastoreEndpoint: mysql://kasa:pw@tcp(db:3306)/kasa\n  registrationAddress: kasa.shop\n  tlsSANs:", 1),
	"  - name: till\n    role: agent", "  - role: server\n    ssh: {address: 10.0.0.4}\n  - role: server\n    ssh: {address: 10.0.0.5}\n  - name: till\n    role: agent", 1)

func TestSeveralServers(t *testing.T) {
	c, err := Parse([]byte(threeServers), env(map[string]string{"SHOP_TOKEN": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range c.Servers() {
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "10.0.0.1 10.0.0.4 10.0.0.5" || c.Server().Name != "10.0.0.1" {
		t.Fatalf("servers %v, first %s", names, c.Server().Name)
	}
	if got, want := c.registrationURL(), "https://kasa.shop:6443"; got != want {
		t.Errorf("registration URL %s, want %s", got, want)
	}
	// Every server's certificate names its own address and the shared one.
	if got, want := strings.Join(serverArgs(c, c.Servers()[1]), " "), "server --tls-san 10.0.0.4 --tls-san kasa.shop --tls-san kasa.shop.example"; got != want {
		t.Errorf("second server's arguments %q, want %q", got, want)
	}
	c.Spec.RegistrationAddress = "[fd00::1]:7443"
	if got, want := c.registrationURL(), "https://[fd00::1]:7443"; got != want {
		t.Errorf("registration URL %s, want %s", got, want)
	}
	if got := serverArgs(c, c.Server()); !strings.Contains(strings.Join(got, " "), "--tls-san fd00::1 ") {
		t.Errorf("first server's arguments %q lack the registration host", got)
	}
	// Without a registration address, the first server's.
	c.Spec.RegistrationAddress = ""
	if got, want := c.registrationURL(), "https://10.0.0.1:6443"; got != want {
		t.Errorf("registration URL %s, want %s", got, want)
	}
}
