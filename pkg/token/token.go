// Package token reads and writes kasa's join tokens.
//
// The full form is K10<sha256 of the cluster CA>::<user>:<secret>; a joining
// node checks the CA it is shown against the hash before it sends the secret.
// The short form is the secret alone and pins no CA. Tokens made by
// `kasa token create` are Kubernetes bootstrap tokens: K10<hash>::<id>.<secret>
// in full, <id>.<secret> short.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

const prefix = "K10"

// User names of the server token and of the agent token. Any other user is
// the id of a bootstrap token.
const (
	ServerUser = "server"
	AgentUser  = "node"
)

// ErrMalformed is returned for a token that is neither form.
var ErrMalformed = errors.New("malformed token")

// Token is a parsed join token.
type Token struct {
	// CAHash is the hex sha256 of the CA certificate; empty for a short token.
	CAHash string
	User   string
	Secret string
	// Bootstrap marks a bootstrap token: User is its id.
	Bootstrap bool
}

var (
	hashRE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
	secretRE    = regexp.MustCompile(`^[^\s:]+$`)
	bootstrapRE = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)
)

// Parse reads either form. Errors never contain the secret.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, prefix); ok && strings.Contains(rest, "::") {
		hash, cred, _ := strings.Cut(rest, "::")
		if !hashRE.MatchString(hash) {
			return Token{}, fmt.Errorf("%w: the CA hash after K10 must be 64 hex digits", ErrMalformed)
		}
		if m := bootstrapRE.FindStringSubmatch(cred); m != nil {
			return Token{CAHash: hash, User: m[1], Secret: m[2], Bootstrap: true}, nil
		}
		user, secret, ok := strings.Cut(cred, ":")
		if !ok || user == "" || !secretRE.MatchString(secret) {
			return Token{}, fmt.Errorf("%w: want K10<ca-hash>::<user>:<secret>", ErrMalformed)
		}
		return Token{CAHash: hash, User: user, Secret: secret}, nil
	}
	if m := bootstrapRE.FindStringSubmatch(s); m != nil {
		return Token{User: m[1], Secret: m[2], Bootstrap: true}, nil
	}
	if !secretRE.MatchString(s) {
		return Token{}, fmt.Errorf("%w: a short token is one word without ':' or spaces", ErrMalformed)
	}
	return Token{Secret: s}, nil
}

// CAHash is the hash a full token names for the CA certificate caPEM: the
// hex sha256 of the certificate file's bytes, as the server's /cacerts
// serves them. During a rotation of the CA the file holds the new CA and
// then the old one; the hash is then the new CA's alone (its PEM block's),
// which stays the hash once the rotation is finished. Every side of a
// join computes it here.
func CAHash(caPEM []byte) string {
	blocks := caBlocks(caPEM)
	if len(blocks) > 1 {
		caPEM = blocks[0]
	}
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// MatchesCA reports whether hash is the CA hash of caPEM or, during a
// rotation, of one of its certificates: a token made before the rotation
// names the old CA, and joins until the rotation is finished.
func MatchesCA(hash string, caPEM []byte) bool {
	if hash == CAHash(caPEM) {
		return true
	}
	for _, b := range caBlocks(caPEM) {
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) == hash {
			return true
		}
	}
	return false
}

// CACert returns the certificate of caPEM whose CA hash is hash (PEM),
// or nil.
func CACert(hash string, caPEM []byte) []byte {
	if hash == CAHash(caPEM) && len(caBlocks(caPEM)) <= 1 {
		return caPEM
	}
	for _, b := range caBlocks(caPEM) {
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) == hash {
			return b
		}
	}
	return nil
}

// caBlocks are the certificates of caPEM, each in its PEM form.
func caBlocks(caPEM []byte) [][]byte {
	var out [][]byte
	for {
		var block *pem.Block
		block, caPEM = pem.Decode(caPEM)
		if block == nil {
			return out
		}
		if block.Type == "CERTIFICATE" {
			out = append(out, pem.EncodeToMemory(block))
		}
	}
}

// String is the full form when the CA hash is known, else the short form.
func (t Token) String() string {
	cred := t.Secret
	if t.Bootstrap {
		cred = t.User + "." + t.Secret
	}
	if t.CAHash == "" {
		return cred
	}
	if t.Bootstrap {
		return prefix + t.CAHash + "::" + cred
	}
	user := t.User
	if user == "" {
		user = ServerUser
	}
	return prefix + t.CAHash + "::" + user + ":" + t.Secret
}

// MinSecretLength is the fewest characters a new server or agent secret
// may have. Bootstrap tokens' secrets (kasa token create) have 16 and
// generated secrets 32.
const MinSecretLength = 16

// ErrWeakSecret is returned for a new secret shorter than MinSecretLength.
var ErrWeakSecret = errors.New("the secret is too short")

// CheckStrength refuses a new secret shorter than MinSecretLength. Its
// error says how to make a good one and never contains the secret.
func CheckStrength(secret string) error {
	if utf8.RuneCountInString(secret) >= MinSecretLength {
		return nil
	}
	return fmt.Errorf("%w: a join secret needs at least %d characters, so that it cannot be guessed; make one with 'openssl rand -hex 16', or give none and kasa generates one", ErrWeakSecret, MinSecretLength)
}

// Equal compares two secrets in constant time: how long it takes tells
// nothing about how much of them matches, nor how long either is.
func Equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// NewSecret returns a random secret of 32 hex digits.
func NewSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// NewBootstrap returns a random bootstrap token: a 6-character id and a
// 16-character secret of lowercase letters and digits. The id is never a
// reserved user name.
func NewBootstrap() (Token, error) {
	for {
		id, err := randomString(6)
		if err != nil {
			return Token{}, err
		}
		secret, err := randomString(16)
		if err != nil {
			return Token{}, err
		}
		if id != ServerUser {
			return Token{User: id, Secret: secret, Bootstrap: true}, nil
		}
	}
}

// IsBootstrapID reports whether id can be a bootstrap token's id.
func IsBootstrapID(id string) bool {
	return len(id) == 6 && strings.Trim(id, alphabet) == "" && id != ServerUser
}

const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// randomString draws n characters of the alphabet uniformly.
func randomString(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, c := range buf {
			// 252 is the largest multiple of 36 below 256.
			if c < 252 && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}
