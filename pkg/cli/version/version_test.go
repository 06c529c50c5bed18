package version

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kasa-io/kasa/pkg/version"
)

func TestPrint(t *testing.T) {
	info := version.Get()
	var table bytes.Buffer
	if err := Print(&table, "", info); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kasa ", "kubernetes ", "containerd ", "runc ", "traefik ", "coredns "} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table has no %q line:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := Print(&js, "json", info); err != nil {
		t.Fatal(err)
	}
	var back version.Info
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("--output json is not JSON: %v\n%s", err, js.String())
	}
	if back.Version != info.Version || len(back.Parts) != len(info.Parts) {
		t.Errorf("JSON round trip: %+v, want %+v", back, info)
	}
	if err := Print(&js, "xml", info); err == nil {
		t.Error("--output xml was taken")
	}
}
