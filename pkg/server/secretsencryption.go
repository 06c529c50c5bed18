package server

import (
	"context"
	"errors"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/component"
	"github.com/kasa-io/kasa/pkg/datastore"
	"github.com/kasa-io/kasa/pkg/secretsencrypt"
)

// encryptionFile is the encryption configuration's path in the server
// folder, as the bootstrap data names it.
const encryptionFile = "cred/encryption-config.yaml"

// secretsEncryption makes the encryption configuration say what
// --secrets-encryption and --secrets-encryption-provider say (a server of
// a shared datastore has the cluster's, from the bootstrap data, by now).
func (s *start) secretsEncryption(context.Context) error {
	if s.shared() && !s.firstServer && s.cfg.SecretsEncryption && !s.encryptionShared {
		return component.Setting(errors.New("--secrets-encryption: the cluster was made without it (its bootstrap data holds no key), and a key of this server alone would make its Secrets unreadable to the other servers: start this server with --secrets-encryption=false"))
	}
	c, exists, err := secretsencrypt.Ensure(s.p.EncryptionConfig(), s.cfg.SecretsEncryption, s.cfg.SecretsProvider, s.now())
	if err != nil {
		return err
	}
	if !exists {
		s.log.Warn("Secrets are stored in plaintext (--secrets-encryption=false)")
		return nil
	}
	s.encryption = &c
	if c.Write == nil {
		s.log.Warn("Secrets are written in plaintext (--secrets-encryption=false); the keys of " + s.p.EncryptionConfig() + " still read those they encrypted")
	} else {
		s.log.Info("Secrets are encrypted at rest", "key", c.WriteID(), "file", s.p.EncryptionConfig())
	}
	s.components = append(s.components, s.secretsRewrite(c.WriteID()))
	return nil
}

// secretsRewrite has every Secret stored under the key that writes: those
// stored before under another (encryption turned on or off, another
// provider) are written again, once the API serves. It waits for the API
// server and tries again after failures; it never stops the server.
func (s *start) secretsRewrite(writeID string) component.Component {
	log := s.log.With("component", "secrets-encryption")
	return component.Func{ComponentName: "secrets-encryption", RunFunc: func(ctx context.Context, ready func()) error {
		ready()
		client, err := kubernetes.NewForConfig(s.adminRC)
		if err != nil {
			return err
		}
		kv, err := datastore.NewKV(s.kine.Endpoints())
		if err != nil {
			return err
		}
		defer kv.Close()
		total := 0
		for wait := time.Duration(0); ; wait = 10 * time.Second {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			rewritten, remaining, err := secretsencrypt.Rewrite(ctx, kv, client, writeID)
			total += rewritten
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				log.Warn("re-writing the Secrets stored under another key: will try again", "err", err)
				continue
			case remaining > 0:
				continue
			}
			if total > 0 {
				log.Info("re-wrote the Secrets stored under another key", "count", total, "key", writeID)
			}
			<-ctx.Done()
			return nil
		}
	}}
}
