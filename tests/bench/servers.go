package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kasa-io/kasa/pkg/agent"
	"github.com/kasa-io/kasa/tests/harness"
)

// benchServers measures the control plane on an external datastore, a
// MariaDB of Debian's on this machine (harness.StartMariaDB): cold starts
// and ConfigMap creates, as benchControlPlane does on SQLite; then three
// servers on it behind kasa's own load balancer (the one every agent runs,
// here as the registration address), and the time from the SIGKILL of the
// server that the load balancer uses, and that leads the controllers,
// until a new client through the load balancer is answered, and until
// the controller-manager's lease has another holder.
func benchServers(bin string, starts, creates int, add func(name, value, target string)) error {
	secret := make([]byte, 12)
	_, _ = rand.Read(secret)
	db, err := harness.StartMariaDB(hex.EncodeToString(secret))
	if err != nil {
		return err
	}
	defer db.Close()

	// Cold starts, each a new cluster in a new database.
	var cold []time.Duration
	var servers []*harness.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	for i := range starts {
		s, err := harness.NewServer(bin)
		if err != nil {
			return err
		}
		s.Env = []string{"KASA_DATASTORE_ENDPOINT=" + db.DSN(fmt.Sprintf("kasa_cold%d", i))}
		d, err := timeStart(s)
		if err != nil {
			s.Close()
			return fmt.Errorf("%w\n%s", err, s.LogTail(20))
		}
		cold = append(cold, d)
		if i < starts-1 {
			s.Close()
		} else {
			servers = append(servers, s)
		}
	}
	add("MariaDB: control plane cold start to /readyz", median(cold), "")
	first := servers[0]
	c, err := first.Client()
	if err != nil {
		return err
	}
	for _, clients := range []int{1, 8} {
		rate, p50, p99, err := createLoad(c, fmt.Sprintf("m%d", clients), creates, clients)
		if err != nil {
			return err
		}
		add(fmt.Sprintf("MariaDB: ConfigMap creates, %d client(s), %d objects", clients, creates),
			fmt.Sprintf("%.0f/s, p50 %s, p99 %s", rate, ms(p50), ms(p99)), "")
	}

	// Two more servers join the first's cluster with its token.
	tok, err := os.ReadFile(filepath.Join(first.DataDir, "server", "token"))
	if err != nil {
		return err
	}
	for range 2 {
		s, err := harness.NewServer(bin)
		if err != nil {
			return err
		}
		s.Env = append(slices.Clone(first.Env), "KASA_TOKEN="+strings.TrimSpace(string(tok)))
		servers = append(servers, s)
		if _, err := timeStart(s); err != nil {
			return fmt.Errorf("a joining server: %w\n%s", err, s.LogTail(20))
		}
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lb := &agent.LoadBalancer{Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), Log: slog.New(slog.DiscardHandler), DialTimeout: time.Second}
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(s.Port))
	}
	lb.SetServers(addrs)
	lbReady := make(chan struct{})
	go func() { _ = lb.Run(ctx, func() { close(lbReady) }) }()
	<-lbReady
	// A new connection for every request, as a new kubectl makes.
	through := func() (kubernetes.Interface, error) {
		rc, err := first.RESTConfig()
		if err != nil {
			return nil, err
		}
		rc.Host = "https://" + lb.Addr
		rc.Timeout = 5 * time.Second
		rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			if t, ok := rt.(*http.Transport); ok {
				t.DisableKeepAlives = true
			}
			return rt
		}
		return kubernetes.NewForConfig(rc)
	}
	lc, err := through()
	if err != nil {
		return err
	}
	answers := func() error {
		_, err := lc.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	}
	if err := answers(); err != nil {
		return fmt.Errorf("through the load balancer: %w", err)
	}
	holder := func() string {
		l, err := lc.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	// The first server has led since the others came.
	var leader string
	for deadline := time.Now().Add(time.Minute); leader == ""; time.Sleep(time.Second) {
		if leader = holder(); leader == "" && time.Now().After(deadline) {
			return fmt.Errorf("no controller-manager lease")
		}
	}
	killed := time.Now()
	first.Kill()
	var answered time.Duration
	for answered == 0 {
		if err := answers(); err == nil {
			answered = time.Since(killed)
		} else if time.Since(killed) > 2*time.Minute {
			return fmt.Errorf("nothing answers through the load balancer 2 min after the SIGKILL: %w", err)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	add("3 servers on MariaDB: SIGKILL of one until kubectl through the registration address answers", fmt.Sprintf("%.2f s", answered.Seconds()), "< 15 s")
	var moved time.Duration
	for moved == 0 {
		if h := holder(); h != "" && h != leader {
			moved = time.Since(killed)
		} else if time.Since(killed) > 2*time.Minute {
			return fmt.Errorf("the controller-manager lease stayed with %s 2 min after its SIGKILL", leader)
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	add("3 servers on MariaDB: SIGKILL of the leader until another holds the controller-manager lease", fmt.Sprintf("%.1f s", moved.Seconds()), "")
	return nil
}
