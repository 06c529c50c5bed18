//go:build integration

package integration

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kasa-io/kasa/tests/harness"
)

// serverSteps are a control plane's start-up steps (--disable-agent), in
// the order docs/architecture.md gives.
var serverSteps = []string{"lock data dir", "check secrets", "check ports", "datastore", "certificates", "tokens",
	"kubeconfigs", "security files", "control plane", "add-ons"}

// stepDone matches the debug line of a step that ran, with its duration.
func stepDone(name string) *regexp.Regexp {
	q := regexp.QuoteMeta(name)
	return regexp.MustCompile(`level=DEBUG msg="step done" step=(` + q + `|"` + q + `") took=[0-9.]+[µnm]?s\b`)
}

// TestIntegrationStartupSteps: kasa server --debug logs each start-up step
// with its duration, in order; without --debug the steps are quiet; a step
// that fails is named in the one-line error.
func TestIntegrationStartupSteps(t *testing.T) {
	s := startServer(t, "--debug")
	log, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for _, name := range serverSteps {
		loc := stepDone(name).FindIndex(log)
		if loc == nil {
			t.Errorf("--debug: no duration logged for step %q", name)
			continue
		}
		if loc[0] < last {
			t.Errorf("step %q logged out of order", name)
		}
		last = loc[0]
	}
	if t.Failed() {
		t.Logf("server log:\n%s", s.LogTail(80))
	}

	// Without --debug: no step lines. A second server on the first's port
	// fails at its step "check ports", which its error names.
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	second, err := harness.NewServer(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.Port = s.Port
	out, code := runBriefly(t, second, 30*time.Second)
	if code == 0 {
		t.Fatalf("a second server on the first's port started:\n%s", out)
	}
	msg := strings.TrimSpace(out)
	if strings.Contains(msg, "step done") {
		t.Errorf("without --debug, steps were logged:\n%s", msg)
	}
	if !strings.HasPrefix(msg, "kasa: check ports: ") || strings.Contains(msg, "\n") {
		t.Errorf("want one line naming the step check ports, got:\n%s", msg)
	}
}
