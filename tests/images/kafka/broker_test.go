package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// standIn runs the stand-in as the image would, on loopback ports of its
// own, with the log directory dir; it returns the advertised address and a
// function that stops it.
func standIn(t *testing.T, dir string, set map[string]string) (string, func()) {
	t.Helper()
	env := chartEnv()
	env["KAFKA_LISTENERS"] = "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0"
	// Port 0 is the bound port, as in Kafka.
	env["KAFKA_ADVERTISED_LISTENERS"] = "PLAINTEXT://localhost:0"
	env["KAFKA_LOG_DIRS"] = dir
	for k, v := range set {
		env[k] = v
	}
	s, err := parseSettings(env)
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t)
	b, err := start(s, log)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			b.close()
		}
	}
	t.Cleanup(stop)
	return b.client.Addr().String(), stop
}

func TestProduceConsumeRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	addr, stop := standIn(t, dir, nil)
	if !strings.HasPrefix(addr, "localhost:") {
		t.Fatalf("advertised %s, want localhost and the bound port", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cl := client(t, addr)
	meta := metadata(ctx, t, cl)
	if len(meta.Brokers) != 1 || meta.Brokers[0].NodeID != 1 || meta.ControllerID != 1 {
		t.Fatalf("brokers %+v, controller %d: want node 1 alone, its own controller", meta.Brokers, meta.ControllerID)
	}
	if b := meta.Brokers[0]; net.JoinHostPort(b.Host, fmt.Sprint(b.Port)) != addr {
		t.Errorf("metadata names the broker %s:%d, want the advertised %s", b.Host, b.Port, addr)
	}
	if meta.ClusterID == nil || *meta.ClusterID != chartEnv()["CLUSTER_ID"] {
		t.Errorf("metadata cluster id %v", meta.ClusterID)
	}

	// A topic made through CreateTopics (which only the controller takes)
	// with the default partition count, num.partitions.
	createTopic(ctx, t, cl, "created", -1)
	if n := partitions(ctx, t, cl, "created"); n != 1 {
		t.Errorf("created topic has %d partitions, want num.partitions=1", n)
	}
	produce(ctx, t, cl, "events", 50)
	if got := consume(ctx, t, addr, "events", 50); got != 50 {
		t.Fatalf("consumed %d records, want 50", got)
	}
	cl.Close()

	meta1, err := readProperties(filepath.Join(dir, "meta.properties"))
	if err != nil {
		t.Fatal(err)
	}
	if meta1["cluster.id"] != chartEnv()["CLUSTER_ID"] || meta1["node.id"] != "1" || meta1["version"] != "1" || len(meta1["directory.id"]) != 22 {
		t.Errorf("meta.properties: %v", meta1)
	}

	// The records survive a restart on the same log directory.
	stop()
	addr, stop = standIn(t, dir, nil)
	if got := consume(ctx, t, addr, "events", 50); got != 50 {
		t.Errorf("after a restart: %d records, want 50", got)
	}
	stop()

	// Another cluster's or node's log directory is refused.
	for _, tc := range []struct{ key, value, want string }{
		{"CLUSTER_ID", "AAAAAAAAAAAAAAAAAAAAAQ", "invalid cluster.id"},
		{"KAFKA_NODE_ID", "2", "stored node id 1"},
	} {
		env := chartEnv()
		env[tc.key] = tc.value
		env["KAFKA_LOG_DIRS"] = dir
		s, err := parseSettings(env)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := start(s, testLogger(t)); err == nil || !strings.Contains(err.Error(), tc.want) {
			if b != nil {
				b.close()
			}
			t.Errorf("%s=%s on a formatted log directory: %v, want %q", tc.key, tc.value, err, tc.want)
		}
	}
}

func TestNodeIDAndLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	addr, _ := standIn(t, dir, map[string]string{"KAFKA_NODE_ID": "7", "KAFKA_NUM_PARTITIONS": "3", "KAFKA_CONTROLLER_QUORUM_VOTERS": "7@localhost:9093"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := client(t, addr)
	meta := metadata(ctx, t, cl)
	if len(meta.Brokers) != 1 || meta.Brokers[0].NodeID != 7 || meta.ControllerID != 7 {
		t.Fatalf("brokers %+v, controller %d: want node 7 alone", meta.Brokers, meta.ControllerID)
	}
	createTopic(ctx, t, cl, "three", -1)
	if n := partitions(ctx, t, cl, "three"); n != 3 {
		t.Errorf("%d partitions, want num.partitions=3", n)
	}
	produce(ctx, t, cl, "three", 30)
	if got := consume(ctx, t, addr, "three", 30); got != 30 {
		t.Errorf("consumed %d, want 30", got)
	}

	// A second process on the same log directory is refused.
	env := chartEnv()
	env["KAFKA_NODE_ID"] = "7"
	env["KAFKA_LOG_DIRS"] = dir
	env["KAFKA_LISTENERS"] = "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0"
	s, err := parseSettings(env)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := start(s, testLogger(t)); err == nil || !strings.Contains(err.Error(), "lock") {
		if b != nil {
			b.close()
		}
		t.Errorf("a second broker on a used log directory: %v", err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	dir := t.TempDir()
	env := []string{
		"CLUSTER_ID=MkU3OEVBNTcwNTJENDM2Qg", "KAFKA_NODE_ID=1", "KAFKA_PROCESS_ROLES=broker,controller",
		"KAFKA_LISTENERS=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
		"KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://localhost:0",
		"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
		"KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER", "KAFKA_LOG_DIRS=" + filepath.Join(dir, "logs"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, env, []string{"KAFKA_SOCKET_SEND_BUFFER_BYTES=1"}, w, filepath.Join(dir, "server.properties"))
	}()
	out := make([]byte, 64<<10)
	n, _ := io.ReadAtLeast(r, out, 1)
	for !strings.Contains(string(out[:n]), "does not apply") {
		m, err := r.Read(out[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	if !strings.Contains(string(out[:n]), "socket.send.buffer.bytes") {
		t.Errorf("the start report does not name the ignored setting:\n%s", out[:n])
	}
	go io.Copy(io.Discard, r) //nolint:errcheck // drains the log
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop when its context ended")
	}
	props, err := os.ReadFile(filepath.Join(dir, "server.properties"))
	if err != nil || !strings.Contains(string(props), "socket.send.buffer.bytes=1\n") {
		t.Errorf("server.properties: %v\n%s", err, props)
	}
}

func client(t *testing.T, addr string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func metadata(ctx context.Context, t *testing.T, cl *kgo.Client) *kmsg.MetadataResponse {
	t.Helper()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func createTopic(ctx context.Context, t *testing.T, cl *kgo.Client, name string, parts int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	topic := kmsg.NewCreateTopicsRequestTopic()
	topic.Topic, topic.NumPartitions, topic.ReplicationFactor = name, parts, -1
	req.Topics = append(req.Topics, topic)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].ErrorCode; code != 0 {
		t.Fatalf("create topic %s: error code %d", name, code)
	}
}

func partitions(ctx context.Context, t *testing.T, cl *kgo.Client, topic string) int {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Topics[0].Partitions)
}

func produce(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, n int) {
	t.Helper()
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "record-%d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// consume reads topic from the start until it has want distinct records
// or ctx ends, and returns how many it read.
func consume(ctx context.Context, t *testing.T, addr, topic string, want int) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]bool{}
	for len(seen) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	for i := range want {
		if !seen[fmt.Sprintf("record-%d", i)] {
			t.Errorf("record-%d not read", i)
			break
		}
	}
	return len(seen)
}
