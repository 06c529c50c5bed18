package join

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRequestJSON(t *testing.T) {
	// The wire names are part of the protocol between versions.
	b, _ := json.Marshal(Request{NodeName: "n", Role: RoleAgent})
	for _, k := range []string{`"nodeName"`, `"role"`, `"password"`, `"addresses"`, `"keys"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("request JSON %s lacks %s", b, k)
		}
	}
}
