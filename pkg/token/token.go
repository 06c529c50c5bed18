// Package token reads and writes kasa's join tokens.
//
// The full form is K10<sha256 of the cluster CA>::<user>:<secret>; a joining
// node checks the CA it is shown against the hash before it sends the secret.
// The short form is the secret alone and pins no CA.
package token

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

const prefix = "K10"

// ServerUser is the user name of the server token.
const ServerUser = "server"

// ErrMalformed is returned for a token that is neither form.
var ErrMalformed = errors.New("malformed token")

// Token is a parsed join token.
type Token struct {
	// CAHash is the hex sha256 of the CA certificate; empty for a short token.
	CAHash string
	User   string
	Secret string
}

var (
	hashRE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	secretRE = regexp.MustCompile(`^[^\s:]+$`)
)

// Parse reads either form. Errors never contain the secret.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, prefix); ok && strings.Contains(rest, "::") {
		hash, cred, _ := strings.Cut(rest, "::")
		user, secret, ok := strings.Cut(cred, ":")
		if !hashRE.MatchString(hash) {
			return Token{}, fmt.Errorf("%w: the CA hash after K10 must be 64 hex digits", ErrMalformed)
		}
		if !ok || user == "" || !secretRE.MatchString(secret) {
			return Token{}, fmt.Errorf("%w: want K10<ca-hash>::<user>:<secret>", ErrMalformed)
		}
		return Token{CAHash: hash, User: user, Secret: secret}, nil
	}
	if !secretRE.MatchString(s) {
		return Token{}, fmt.Errorf("%w: a short token is one word without ':' or spaces", ErrMalformed)
	}
	return Token{Secret: s}, nil
}

// String is the full form when the CA hash is known, else the short form.
func (t Token) String() string {
	if t.CAHash == "" {
		return t.Secret
	}
	user := t.User
	if user == "" {
		user = ServerUser
	}
	return prefix + t.CAHash + "::" + user + ":" + t.Secret
}

// NewSecret returns a random secret of 32 hex digits.
func NewSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
