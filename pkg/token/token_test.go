package token

import (
	"errors"
	"strings"
	"testing"
)

const hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Token
		err  bool
	}{
		{"K10" + hash + "::server:s3cret", Token{CAHash: hash, User: "server", Secret: "s3cret"}, false},
		{"K10" + hash + "::node:abc\n", Token{CAHash: hash, User: "node", Secret: "abc"}, false},
		{"justasecret", Token{Secret: "justasecret"}, false},
		{"K10" + hash + "::abcdef.0123456789abcdef", Token{CAHash: hash, User: "abcdef", Secret: "0123456789abcdef", Bootstrap: true}, false},
		{"abcdef.0123456789abcdef", Token{User: "abcdef", Secret: "0123456789abcdef", Bootstrap: true}, false},
		{"K10" + hash + "::ABCDEF.0123456789abcdef", Token{}, true},
		{"K10abc::server:s3cret", Token{}, true},
		{"K10" + hash + "::server", Token{}, true},
		{"K10" + hash + "::server:", Token{}, true},
		{"two words", Token{}, true},
		{"", Token{}, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v", tt.in, got, err)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the secret", err)
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	s, err := NewSecret()
	if err != nil || len(s) != 32 {
		t.Fatalf("secret %q %v", s, err)
	}
	tok := Token{CAHash: hash, Secret: s}
	back, err := Parse(tok.String())
	if err != nil || back.Secret != s || back.User != ServerUser || back.CAHash != hash {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

func TestBootstrap(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		tok, err := NewBootstrap()
		if err != nil {
			t.Fatal(err)
		}
		if !IsBootstrapID(tok.User) || len(tok.Secret) != 16 || seen[tok.User] {
			t.Fatalf("bad or repeated bootstrap token %+v", tok)
		}
		seen[tok.User] = true
		tok.CAHash = hash
		back, err := Parse(tok.String())
		if err != nil || back != tok {
			t.Fatalf("round trip of %q: %+v %v", tok.String(), back, err)
		}
	}
	for _, id := range []string{"server", "node", "abc.de", "ABCDEF", "abcdefg"} {
		if IsBootstrapID(id) {
			t.Errorf("%q taken for a bootstrap id", id)
		}
	}
}
