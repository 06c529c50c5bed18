package token

import (
	"encoding/pem"
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

func TestCheckStrength(t *testing.T) {
	for _, tt := range []struct {
		secret string
		ok     bool
	}{
		{"", false},
		{"s3cret", false},
		{"fifteen-chars-x", false},
		{"sixteen-chars-xy", true},
		{"ééééééééééééééé", false}, // 15 characters, 30 bytes
		{"éééééééééééééééé", true},
	} {
		err := CheckStrength(tt.secret)
		if (err == nil) != tt.ok {
			t.Errorf("CheckStrength(%q) = %v, want ok=%v", tt.secret, err, tt.ok)
		}
		if err == nil {
			continue
		}
		msg := err.Error()
		if !errors.Is(err, ErrWeakSecret) || !strings.Contains(msg, "at least 16") || !strings.Contains(msg, "openssl rand -hex 16") {
			t.Errorf("CheckStrength(%q): %q does not say the minimum and how to make one", tt.secret, msg)
		}
		if tt.secret != "" && strings.Contains(msg, tt.secret) {
			t.Errorf("the error shows the secret: %q", msg)
		}
	}
	// What kasa makes itself passes: kasa token create's bootstrap
	// secrets and the generated server token.
	for range 20 {
		b, err := NewBootstrap()
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		if CheckStrength(b.Secret) != nil || CheckStrength(s) != nil {
			t.Fatalf("a generated secret is refused: %d and %d characters", len(b.Secret), len(s))
		}
	}
}

func TestEqual(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"0123456789abcdef", "0123456789abcdef", true},
		{"0123456789abcdef", "0123456789abcdeF", false},
		{"0123456789abcdef", "0123456789abcde", false},
		{"", "", true},
		{"", "x", false},
	} {
		if got := Equal(tt.a, tt.b); got != tt.want {
			t.Errorf("Equal(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

// TestCAHash: the hash is the sha256 of the certificate's bytes in hex, as
// `sha256sum ca.crt` prints it, and Parse takes it in a full token.
func TestCAHash(t *testing.T) {
	// printf 'not a real certificate\n' | sha256sum
	const want = "ec16438ea3c9e01f0a81ba51c1239a8134b8b5b66582076ecde74ef76f38c6e9"
	got := CAHash([]byte("not a real certificate\n"))
	if got != want {
		t.Fatalf("CAHash = %s, want %s", got, want)
	}
	if CAHash([]byte("not a real certificate")) == got {
		t.Error("a different certificate has the same hash")
	}
	tok, err := Parse("K10" + got + "::server:s3cret")
	if err != nil || tok.CAHash != got {
		t.Errorf("Parse of a token with the hash: %+v, %v", tok, err)
	}
}

// TestCAHashRotation: during a rotation of the CA, the CA file holds the
// new CA and the old one; its hash is the new CA's alone (what the token
// names once the rotation is finished), and a token that names either
// matches, as one that names neither does not.
func TestCAHashRotation(t *testing.T) {
	block := func(b byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{b, b, b}})
	}
	newCA, oldCA, stranger := block(1), block(2), block(3)
	bundle := append(append([]byte{}, newCA...), oldCA...)
	if CAHash(bundle) != CAHash(newCA) {
		t.Error("the hash of a rotation's CA file is not the new CA's")
	}
	for _, tc := range []struct {
		name string
		ca   []byte
		want bool
	}{{"new", newCA, true}, {"old", oldCA, true}, {"stranger", stranger, false}} {
		if got := MatchesCA(CAHash(tc.ca), bundle); got != tc.want {
			t.Errorf("MatchesCA(%s) = %t", tc.name, got)
		}
		got := CACert(CAHash(tc.ca), bundle)
		if (got != nil) != tc.want || (tc.want && string(got) != string(tc.ca)) {
			t.Errorf("CACert(%s) = %q", tc.name, got)
		}
	}
	if !MatchesCA(CAHash(newCA), newCA) || MatchesCA(CAHash(oldCA), newCA) {
		t.Error("one CA: only its own hash matches")
	}
}
