package secretsencrypt

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// SecretsPrefix is where the API server stores Secrets, as
// /registry/secrets/<namespace>/<name>.
const SecretsPrefix = "/registry/secrets/"

// Stored reads what the datastore holds under a prefix, key by key: the
// bytes the API server wrote, as the datastore keeps them.
type Stored interface {
	List(ctx context.Context, prefix string) (map[string][]byte, error)
}

// Census counts the stored Secrets by what they are stored under, and
// names those not under writeID (by key).
func Census(ctx context.Context, stored Stored, writeID string) (counts map[string]int, others []string, err error) {
	values, err := stored.List(ctx, SecretsPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("read the stored Secrets: %w", err)
	}
	counts = map[string]int{}
	for _, key := range slices.Sorted(maps.Keys(values)) {
		under := StoredUnder(values[key])
		counts[under]++
		if under != writeID {
			others = append(others, key)
		}
	}
	return counts, others, nil
}

// Rewrite has the API server write again every Secret that is stored under
// another key than writeID: an update that changes nothing, which the API
// server stores anew because it read the Secret through a key that no
// longer writes. It returns how many it rewrote, and how many remain under
// another key (the API server has not loaded the configuration yet, or a
// Secret changed meanwhile: call it again).
func Rewrite(ctx context.Context, stored Stored, c kubernetes.Interface, writeID string) (rewritten, remaining int, err error) {
	_, others, err := Census(ctx, stored, writeID)
	if err != nil {
		return 0, 0, err
	}
	for _, key := range others {
		ns, name, ok := strings.Cut(strings.TrimPrefix(key, SecretsPrefix), "/")
		if !ok {
			continue
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			s, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			return err
		})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return rewritten, 0, fmt.Errorf("rewrite Secret %s/%s: %w", ns, name, err)
		default:
			rewritten++
		}
	}
	_, others, err = Census(ctx, stored, writeID)
	return rewritten, len(others), err
}
