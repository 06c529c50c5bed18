//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaRecords is how many records the kafka test writes and reads back.
const kafkaRecords = 200

// checkKafka drives the release kafka in default with franz-go's client from
// this process, as a client in a pod would: it bootstraps through the
// Service kafka.default.svc (a ClusterIP, which kube-proxy serves on the
// node too), then follows the broker's advertised name. It checks the
// metadata against the chart, produces kafkaRecords records, consumes them
// back, replaces the broker's pod and consumes them again.
func checkKafka(t *testing.T, c kubernetes.Interface) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dns, err := c.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dial := clusterDialer(dns.Spec.ClusterIP)
	clusterID := string(secretData(t, c, "kafka-auth")["kafka-cluster-id"])
	const seed, topic = "kafka.default.svc:9092", "e2e"

	cl, err := kgo.NewClient(kgo.SeedBrokers(seed), kgo.Dialer(dial))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var meta *kmsg.MetadataResponse
	waitFor(t, 2*time.Minute, "kafka's metadata through the Service", func() error {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		meta, err = kmsg.NewPtrMetadataRequest().RequestWith(rctx, cl)
		return err
	})
	if len(meta.Brokers) != 1 {
		t.Fatalf("metadata lists %d brokers, want 1: %+v", len(meta.Brokers), meta.Brokers)
	}
	b := meta.Brokers[0]
	if got, want := net.JoinHostPort(b.Host, fmt.Sprint(b.Port)), "kafka-0.kafka-headless.default.svc:9092"; got != want {
		t.Errorf("the broker advertises %s, want %s (the chart's KAFKA_ADVERTISED_LISTENERS)", got, want)
	}
	if b.NodeID != 1 || meta.ControllerID != 1 {
		t.Errorf("node %d, controller %d: want the chart's KAFKA_NODE_ID 1 for both", b.NodeID, meta.ControllerID)
	}
	if meta.ClusterID == nil || *meta.ClusterID != clusterID {
		t.Errorf("cluster id %v, want the Secret's %s", meta.ClusterID, clusterID)
	}

	// CreateTopics goes to the controller, through the advertised name.
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 3, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if code := resp.Topics[0].ErrorCode; code != 0 {
		t.Fatalf("create topic %s: error code %d", topic, code)
	}

	start := time.Now()
	var recs []*kgo.Record
	for i := range kafkaRecords {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "record-%d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	consumeKafka(ctx, t, dial, seed, topic, kafkaRecords)
	t.Logf("produced and consumed %d records in %s", kafkaRecords, time.Since(start).Round(time.Millisecond))

	// The records are in the log directory on the volume: a new pod
	// serves them again.
	recreatePod(t, c, "kafka-0")
	consumeKafka(ctx, t, dial, seed, topic, kafkaRecords)
}

// consumeKafka reads topic from its start with a new client until it has
// read record-0 to record-(want-1), and fails the test if ctx ends first
// or a record comes twice or not at all.
func consumeKafka(ctx context.Context, t *testing.T, dial func(context.Context, string, string) (net.Conn, error), seed, topic string, want int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seed), kgo.Dialer(dial),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	seen := map[string]int{}
	total := 0
	for total < want && pctx.Err() == nil {
		fs := cl.PollFetches(pctx)
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			total++
		})
	}
	var missing []string
	for i := range want {
		v := fmt.Sprintf("record-%d", i)
		if seen[v] != 1 {
			missing = append(missing, fmt.Sprintf("%s x%d", v, seen[v]))
		}
	}
	if total != want || len(missing) > 0 {
		t.Fatalf("consumed %d records of %s, want %d, each once; wrong: %.300s", total, topic, want, strings.Join(missing, ", "))
	}
}

// clusterDialer dials as a pod of the default namespace would: names are
// looked up in the cluster's DNS only (kube-dns at dnsIP, reached through
// kube-proxy), a name ending in .svc completed with the cluster domain as
// the pod's search path completes it.
func clusterDialer(dnsIP string) func(context.Context, string, string) (net.Conn, error) {
	var d net.Dialer
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, net.JoinHostPort(dnsIP, "53"))
	}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if net.ParseIP(host) == nil {
			name := host
			if strings.HasSuffix(name, ".svc") {
				name += ".cluster.local"
			}
			ips, err := r.LookupHost(ctx, name+".")
			if err != nil {
				return nil, err
			}
			host = ips[0]
		}
		return d.DialContext(ctx, network, net.JoinHostPort(host, port))
	}
}
