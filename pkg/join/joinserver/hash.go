package joinserver

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// hashIterations of PBKDF2-SHA256: about 20 ms here, which makes guessing a
// weak, user-chosen token from a stolen hash slow and costs a join little.
const hashIterations = 100_000

// HashSecret returns a salted hash of secret, for storing a token or a node
// password in the cluster: pbkdf2-sha256$<iterations>$<salt>$<hash>.
func HashSecret(secret string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha256.New, secret, salt, hashIterations, 32)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", hashIterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// CheckSecret reports whether secret matches a hash made by HashSecret.
func CheckSecret(hash, secret string) (bool, error) {
	f := strings.Split(hash, "$")
	if len(f) != 4 || f[0] != "pbkdf2-sha256" {
		return false, errors.New("unknown hash format")
	}
	iter, err := strconv.Atoi(f[1])
	if err != nil || iter < 1 {
		return false, errors.New("bad iteration count")
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(f[2])
	want, err2 := enc.DecodeString(f[3])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, errors.New("bad salt or hash")
	}
	got, err := pbkdf2.Key(sha256.New, secret, salt, iter, len(want))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
