package joinserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/kasa-io/kasa/pkg/join"
	"github.com/kasa-io/kasa/pkg/token"
)

// Where the cluster keeps what joins are checked against, in kube-system:
// the hashes of the server and agent secrets in the Secret kasa-token, a
// hash of each node's password in <node>.node-password.kasa, and the
// bootstrap tokens in the upstream bootstrap-token-<id> Secrets (whose
// expired ones kube-controller-manager's tokencleaner deletes).
const (
	Namespace          = metav1.NamespaceSystem
	TokenSecret        = "kasa-token"
	nodePasswordSuffix = ".node-password.kasa"
	// Keys of the kasa-token Secret.
	serverKey = "server"
	agentKey  = "agent"
)

// Secret types kasa uses, so that kubectl shows what a Secret is for.
const (
	tokenSecretType    corev1.SecretType = "kasa.io/join-token-hashes"
	nodePasswordType   corev1.SecretType = "kasa.io/node-password"
	nodePasswordKey                      = "hash"
	bootstrapUsageTrue                   = "true"
)

// ErrNameTaken is returned when a machine claims the name of a node that
// another machine holds.
var ErrNameTaken = errors.New("node name taken")

// Store reads and writes the join secrets kept in the cluster.
type Store struct {
	Client kubernetes.Interface
	// Now is the clock for bootstrap tokens' expiry; time.Now when nil.
	Now func() time.Time
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// TokenState says what EnsureTokens found.
type TokenState struct {
	// ServerStale: the cluster's server secret is not the one given
	// (rotated on another server, or the local token file is old).
	ServerStale bool
	// AgentKept: an agent secret was given but the cluster has another
	// one (rotated with kasa token rotate --agent), which stays.
	AgentKept bool
}

// EnsureTokens records the hashes of the server secret and, when not empty,
// the agent secret, unless the cluster has them: a cluster's secrets change
// only through Rotate.
func (s *Store) EnsureTokens(ctx context.Context, server, agent string) (TokenState, error) {
	var st TokenState
	secrets := s.Client.CoreV1().Secrets(Namespace)
	sec, err := secrets.Get(ctx, TokenSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		data := map[string][]byte{}
		if err := putHash(data, serverKey, server); err != nil {
			return st, err
		}
		if agent != "" {
			if err := putHash(data, agentKey, agent); err != nil {
				return st, err
			}
		}
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: TokenSecret, Namespace: Namespace},
			Type:       tokenSecretType,
			Data:       data,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return s.EnsureTokens(ctx, server, agent)
		}
		return st, err
	}
	if err != nil {
		return st, err
	}
	if ok, _ := CheckSecret(string(sec.Data[serverKey]), server); !ok {
		st.ServerStale = true
	}
	if agent == "" {
		return st, nil
	}
	if h, ok := sec.Data[agentKey]; ok {
		if match, _ := CheckSecret(string(h), agent); !match {
			st.AgentKept = true
		}
		return st, nil
	}
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	if err := putHash(sec.Data, agentKey, agent); err != nil {
		return st, err
	}
	_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	return st, err
}

func putHash(data map[string][]byte, key, secret string) error {
	h, err := HashSecret(secret)
	if err != nil {
		return err
	}
	data[key] = []byte(h)
	return nil
}

// Rotate replaces the server secret (agent false) or the agent secret
// (agent true) with secret. Nodes that have joined keep their
// certificates; the old secret stops joining at once.
func (s *Store) Rotate(ctx context.Context, agent bool, secret string) error {
	key := serverKey
	if agent {
		key = agentKey
	}
	secrets := s.Client.CoreV1().Secrets(Namespace)
	sec, err := secrets.Get(ctx, TokenSecret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read %s/%s: %w", Namespace, TokenSecret, err)
	}
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	if err := putHash(sec.Data, key, secret); err != nil {
		return err
	}
	_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	return err
}

// Authenticate returns the role that user and secret may join as: join.RoleServer,
// join.RoleAgent, or "" when the credentials are not accepted. The server secret
// joins servers and agents; the agent secret and bootstrap tokens join
// agents only. An empty user (a short token) is tried as each.
func (s *Store) Authenticate(ctx context.Context, user, secret string) (string, error) {
	var hashes map[string][]byte
	if user == "" || user == token.ServerUser || user == token.AgentUser {
		sec, err := s.Client.CoreV1().Secrets(Namespace).Get(ctx, TokenSecret, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		hashes = sec.Data
	}
	match := func(key string) bool {
		h, ok := hashes[key]
		if !ok {
			return false
		}
		m, _ := CheckSecret(string(h), secret)
		return m
	}
	switch {
	case user == token.ServerUser || user == "":
		if match(serverKey) {
			return join.RoleServer, nil
		}
		if user == "" && match(agentKey) {
			return join.RoleAgent, nil
		}
	case user == token.AgentUser:
		if match(agentKey) || match(serverKey) {
			return join.RoleAgent, nil
		}
	case token.IsBootstrapID(user):
		ok, err := s.checkBootstrap(ctx, user, secret)
		if err != nil || !ok {
			return "", err
		}
		return join.RoleAgent, nil
	}
	return "", nil
}

func (s *Store) checkBootstrap(ctx context.Context, id, secret string) (bool, error) {
	sec, err := s.Client.CoreV1().Secrets(Namespace).Get(ctx, bootstrapapi.BootstrapTokenSecretPrefix+id, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	bt, ok := parseBootstrap(sec)
	if !ok || !token.Equal(bt.secret, secret) || !bt.Authentication {
		return false, nil
	}
	return bt.Expires.IsZero() || s.now().Before(bt.Expires), nil
}

// ClaimNodeName checks that password is the one of the machine that holds
// the node name: a name whose Node exists is kept for the machine whose
// password hash the cluster has; a name without a Node is free, and this
// machine's hash is recorded for it.
func (s *Store) ClaimNodeName(ctx context.Context, node, password string) error {
	secrets := s.Client.CoreV1().Secrets(Namespace)
	name := node + nodePasswordSuffix
	sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	found := err == nil
	_, err = s.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case err == nil:
		if found {
			if ok, _ := CheckSecret(string(sec.Data[nodePasswordKey]), password); ok {
				return nil
			}
		}
		return nameTaken(node)
	case !apierrors.IsNotFound(err):
		return err
	}
	h, err := HashSecret(password)
	if err != nil {
		return err
	}
	if found {
		sec.Data = map[string][]byte{nodePasswordKey: []byte(h)}
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		return err
	}
	_, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace},
		Type:       nodePasswordType,
		Data:       map[string][]byte{nodePasswordKey: []byte(h)},
	}, metav1.CreateOptions{})
	return err
}

// CheckNode checks that the Node node exists and that password is the one
// whose hash the cluster keeps for it: a joined node renews its
// certificates only so. Unlike ClaimNodeName it writes nothing, so the
// certificate of a deleted node cannot claim its name again; it returns
// join.ErrNodeDeleted when the Node is gone and ErrNameTaken when the password
// is not the node's (or none is kept).
func (s *Store) CheckNode(ctx context.Context, node, password string) error {
	_, err := s.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return join.ErrNodeDeleted
	}
	if err != nil {
		return err
	}
	sec, err := s.Client.CoreV1().Secrets(Namespace).Get(ctx, node+nodePasswordSuffix, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nameTaken(node)
	}
	if err != nil {
		return err
	}
	if ok, _ := CheckSecret(string(sec.Data[nodePasswordKey]), password); !ok {
		return nameTaken(node)
	}
	return nil
}

func nameTaken(node string) error {
	return fmt.Errorf("%w: node %q belongs to another machine; delete that node first (kasa kubectl delete node %s) or give this machine another name with --node-name", ErrNameTaken, node, node)
}

// BootstrapToken is a token made by kasa token create, as listed.
type BootstrapToken struct {
	ID             string
	Description    string
	Expires        time.Time // zero: never
	Authentication bool
	Created        time.Time
	secret         string
}

func parseBootstrap(sec *corev1.Secret) (BootstrapToken, bool) {
	if sec.Type != bootstrapapi.SecretTypeBootstrapToken {
		return BootstrapToken{}, false
	}
	d := func(k string) string { return string(sec.Data[k]) }
	bt := BootstrapToken{
		ID:             d(bootstrapapi.BootstrapTokenIDKey),
		Description:    d(bootstrapapi.BootstrapTokenDescriptionKey),
		Authentication: d(bootstrapapi.BootstrapTokenUsageAuthentication) == bootstrapUsageTrue,
		Created:        sec.CreationTimestamp.Time,
		secret:         d(bootstrapapi.BootstrapTokenSecretKey),
	}
	if bt.ID == "" || sec.Name != bootstrapapi.BootstrapTokenSecretPrefix+bt.ID {
		return BootstrapToken{}, false
	}
	if e := d(bootstrapapi.BootstrapTokenExpirationKey); e != "" {
		t, err := time.Parse(time.RFC3339, e)
		if err != nil {
			// An expiry that cannot be read is treated as passed.
			t = time.Unix(0, 0)
		}
		bt.Expires = t
	}
	return bt, true
}

// CreateBootstrap makes a bootstrap token that joins agents, valid for ttl
// (0: no expiry).
func (s *Store) CreateBootstrap(ctx context.Context, ttl time.Duration, description string) (token.Token, error) {
	for {
		t, err := token.NewBootstrap()
		if err != nil {
			return token.Token{}, err
		}
		data := map[string][]byte{
			bootstrapapi.BootstrapTokenIDKey:               []byte(t.User),
			bootstrapapi.BootstrapTokenSecretKey:           []byte(t.Secret),
			bootstrapapi.BootstrapTokenUsageAuthentication: []byte(bootstrapUsageTrue),
		}
		if description != "" {
			data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(description)
		}
		if ttl > 0 {
			data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(s.now().Add(ttl).UTC().Format(time.RFC3339))
		}
		_, err = s.Client.CoreV1().Secrets(Namespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.BootstrapTokenSecretPrefix + t.User, Namespace: Namespace},
			Type:       bootstrapapi.SecretTypeBootstrapToken,
			Data:       data,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // the id is taken: draw another
		}
		return t, err
	}
}

// ListBootstrap returns the bootstrap tokens, oldest first.
func (s *Store) ListBootstrap(ctx context.Context) ([]BootstrapToken, error) {
	list, err := s.Client.CoreV1().Secrets(Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "type=" + string(bootstrapapi.SecretTypeBootstrapToken),
	})
	if err != nil {
		return nil, err
	}
	var out []BootstrapToken
	for i := range list.Items {
		if bt, ok := parseBootstrap(&list.Items[i]); ok {
			out = append(out, bt)
		}
	}
	slices.SortFunc(out, func(a, b BootstrapToken) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// DeleteBootstrap deletes the bootstrap token id (its id, or the whole
// token, whose id is read from it).
func (s *Store) DeleteBootstrap(ctx context.Context, id string) error {
	if t, err := token.Parse(id); err == nil && t.Bootstrap {
		id = t.User
	}
	id = strings.TrimSpace(id)
	if !token.IsBootstrapID(id) {
		return fmt.Errorf("%q is not a token id: ids are 6 lowercase letters or digits, as kasa token list shows", id)
	}
	err := s.Client.CoreV1().Secrets(Namespace).Delete(ctx, bootstrapapi.BootstrapTokenSecretPrefix+id, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no token with id %s (kasa token list shows the tokens)", id)
	}
	return err
}
