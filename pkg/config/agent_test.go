package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestProtectKernelDefaults: --protect-kernel-defaults (k3s's name) sets
// it, and the kubelet's own flag given with --kubelet-arg, which the
// kubelet would honour over kasa's file, decides when present.
func TestProtectKernelDefaults(t *testing.T) {
	tests := []struct {
		args []string
		want bool
		err  string
	}{
		{nil, false, ""},
		{[]string{"--protect-kernel-defaults"}, true, ""},
		{[]string{"--kubelet-arg", "protect-kernel-defaults=true"}, true, ""},
		{[]string{"--kubelet-arg", "--protect-kernel-defaults"}, true, ""},
		{[]string{"--protect-kernel-defaults", "--kubelet-arg", "protect-kernel-defaults=false"}, false, ""},
		{[]string{"--kubelet-arg", "protect-kernel-defaults=maybe"}, false, "want protect-kernel-defaults=true or false"},
	}
	for _, tt := range tests {
		o := &AgentOptions{}
		fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		a, err := o.Complete()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if a.ProtectKernelDefaults != tt.want {
			t.Errorf("%v: ProtectKernelDefaults %v, want %v", tt.args, a.ProtectKernelDefaults, tt.want)
		}
	}
}
