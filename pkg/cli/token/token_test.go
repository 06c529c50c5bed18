package token

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/pkg/kubeconfig"
	"github.com/kasa-io/kasa/pkg/token"
)

// TestRotateRefusesShortSecret: kasa token rotate --new-token refuses a
// secret shorter than 16 characters before it reaches the cluster.
func TestRotateRefusesShortSecret(t *testing.T) {
	for _, agent := range []bool{false, true} {
		cmd := NewCommand(kubeconfig.Env{Readable: func(string) bool { return false }})
		args := []string{"rotate", "--new-token", "short-s3cret", "--kubeconfig", "/nonexistent/kubeconfig"}
		if agent {
			args = append(args, "--agent")
		}
		var out bytes.Buffer
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.Execute()
		if !errors.Is(err, token.ErrWeakSecret) {
			t.Fatalf("rotate %v: %v, want a refusal of the short secret", args, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "--new-token") || !strings.Contains(msg, "openssl rand -hex 16") || strings.Contains(msg, "short-s3cret") {
			t.Errorf("message %q: want the flag and how to make a secret, without the secret", msg)
		}
	}
}
