package server

import (
	"strings"
	"testing"
)

func TestFlagArgs(t *testing.T) {
	got := flagArgs(map[string]string{"b": "1", "a": "x", "c": "3"},
		[]string{"b=2", "--d=4", "e=5", "e=6", "-c=7"})
	want := "--a=x --b=2 --c=7 --d=4 --e=5 --e=6"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if v, ok := flagValue(got, "e"); !ok || v != "6" {
		t.Fatalf("flagValue e = %q %v", v, ok)
	}
	if _, ok := flagValue(got, "z"); ok {
		t.Fatal("flagValue found a missing flag")
	}
}
