package agent

import (
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"testing"
)

// TestCheckKernelDefaults: with the kubelet's values, the check passes;
// one that differs stops the start with the setting, its value, the one
// wanted and the command that sets it; an unreadable setting is an error.
func TestCheckKernelDefaults(t *testing.T) {
	want := func(key string) (string, error) { return strconv.Itoa(KubeletSysctls[key]) + "\n", nil }
	if err := CheckKernelDefaults(want); err != nil {
		t.Fatal(err)
	}
	differs := func(key string) (string, error) {
		if key == "kernel/panic" {
			return "0\n", nil
		}
		return want(key)
	}
	err := CheckKernelDefaults(differs)
	if !errors.Is(err, ErrKernelDefaults) {
		t.Fatalf("got %v, want ErrKernelDefaults", err)
	}
	for _, s := range []string{"kernel.panic is 0, want 10", "sysctl -w kernel.panic=10", "/etc/sysctl.d/", "without --protect-kernel-defaults"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not say %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "overcommit") {
		t.Errorf("%q names a setting that is right", err)
	}
	missing := func(string) (string, error) { return "", fs.ErrNotExist }
	if err := CheckKernelDefaults(missing); err == nil || errors.Is(err, ErrKernelDefaults) {
		t.Errorf("unreadable settings: %v", err)
	}
}

// TestKubeletConfiguration: the kubelet's port takes TLS 1.2 and up with
// kasa's suites, and protects the kernel's defaults when told.
func TestKubeletConfiguration(t *testing.T) {
	kc := KubeletConfig{ProtectKernelDefaults: true}.Configuration()
	if kc.TLSMinVersion != "VersionTLS12" || len(kc.TLSCipherSuites) != 6 || !kc.ProtectKernelDefaults {
		t.Errorf("TLSMinVersion %q, TLSCipherSuites %v, ProtectKernelDefaults %v", kc.TLSMinVersion, kc.TLSCipherSuites, kc.ProtectKernelDefaults)
	}
	if *kc.Authentication.Anonymous.Enabled || kc.Authorization.Mode != "Webhook" || kc.ReadOnlyPort != 0 {
		t.Errorf("kubelet authentication %+v, authorization %s, read-only port %d", kc.Authentication, kc.Authorization.Mode, kc.ReadOnlyPort)
	}
}
