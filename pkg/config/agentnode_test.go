package config

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kasa-io/kasa/pkg/settings"
)

func agentFlags(t *testing.T, env map[string]string, args ...string) *AgentNodeOptions {
	t.Helper()
	o := &AgentNodeOptions{}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := settings.Resolve(fs, settings.Sources{LookupEnv: lookup}); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestAgentNodeComplete(t *testing.T) {
	noConfig := "--config=" + os.DevNull
	o := agentFlags(t, map[string]string{"KASA_URL": "https://srv", "KASA_TOKEN": "K10abc"}, noConfig)
	a, err := o.Complete(host)
	if err != nil {
		t.Fatal(err)
	}
	if a.Server != "https://srv:6443" || a.Token.Reveal() != "K10abc" || a.NodeName != "node-1" ||
		a.NodeIPs[0].String() != "192.0.2.10" || a.LBServerPort != DefaultLBServerPort {
		t.Errorf("agent %+v", a)
	}
	if strings.Contains(a.Token.String(), "K10abc") {
		t.Error("the token prints")
	}

	tests := []struct {
		args []string
		want string
	}{
		{nil, "no server to join: give --server https://HOST:6443 (or KASA_URL)"},
		{[]string{"--server", "http://srv:6443"}, "invalid --server"},
		{[]string{"--server", "https://srv:6443/api"}, "invalid --server"},
		{[]string{"--server", "https://srv", "--token", "a", "--token-file", "/t"}, "both set"},
		{[]string{"--server", "https://srv", "--node-ip", "x"}, "invalid --node-ip"},
		{[]string{"--server", "https://srv", "--lb-server-port", "0"}, "invalid --lb-server-port"},
		{[]string{"--server", "https://srv", "--node-taint", "a=b"}, "invalid --node-taint"},
	}
	for _, tt := range tests {
		o := agentFlags(t, nil, append([]string{noConfig}, tt.args...)...)
		_, err := o.Complete(host)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
	// A URL with a password is refused without showing it.
	o = agentFlags(t, nil, noConfig, "--server", "https://user:pw@srv:6443")
	if _, err := o.Complete(host); err == nil || strings.Contains(err.Error(), "pw@") {
		t.Errorf("URL with a password: %v", err)
	}
	o = agentFlags(t, nil, noConfig, "--server", "https://srv")
	if _, err := o.Complete(Host{Hostname: "x"}); err == nil || !strings.Contains(err.Error(), "--node-ip") {
		t.Errorf("no default route: %v", err)
	}
}
