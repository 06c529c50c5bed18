package main

import (
	"strings"
	"testing"
)

// chartEnv is the environment the catalog's kafka chart gives the image.
func chartEnv() map[string]string {
	return map[string]string{
		"CLUSTER_ID":                                     "MkU3OEVBNTcwNTJENDM2Qg",
		"KAFKA_NODE_ID":                                  "1",
		"KAFKA_PROCESS_ROLES":                            "broker,controller",
		"KAFKA_LISTENERS":                                "PLAINTEXT://:9092,CONTROLLER://:9093",
		"KAFKA_ADVERTISED_LISTENERS":                     "PLAINTEXT://kafka-0.kafka-headless.default.svc:9092",
		"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
		"KAFKA_INTER_BROKER_LISTENER_NAME":               "PLAINTEXT",
		"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
		"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9093",
		"KAFKA_LOG_DIRS":                                 "/var/lib/kafka/data/logs",
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
		"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
		"KAFKA_HEAP_OPTS":                                "-Xms512m -Xmx512m",
	}
}

func TestPropertyName(t *testing.T) {
	for env, want := range map[string]string{
		"LOG_RETENTION_HOURS":         "log.retention.hours",
		"NODE_ID":                     "node.id",
		"CONFLUENT__SUPPORT":          "confluent_support",
		"LISTENER_NAME___X_Y":         "listener.name-x.y",
		"ADVERTISED_LISTENERS":        "advertised.listeners",
		"LOG_CLEANER_DEDUPE___BUFFER": "log.cleaner.dedupe-buffer",
	} {
		if got := propertyName(env); got != want {
			t.Errorf("propertyName(%s) = %s, want %s", env, got, want)
		}
	}
}

func TestChartSettings(t *testing.T) {
	env := chartEnv()
	env["KAFKA_LOG_RETENTION_HOURS"] = "72"
	env["KAFKA_NUM_PARTITIONS"] = "3"
	env["KAFKA_MESSAGE_MAX_BYTES"] = "2000000"
	env["KAFKA_SOCKET_SEND_BUFFER_BYTES"] = "102400"
	s, err := parseSettings(env)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"cluster id", s.clusterID, "MkU3OEVBNTcwNTJENDM2Qg"},
		{"node id", s.nodeID, int32(1)},
		{"client listener", s.client.String(), "PLAINTEXT://:9092"},
		{"advertised", s.advertised.String(), "PLAINTEXT://kafka-0.kafka-headless.default.svc:9092"},
		{"controllers", len(s.controllers), 1},
		{"log dir", s.logDir, "/var/lib/kafka/data/logs"},
		{"partitions", s.numPartitions, 3},
		{"auto create", s.autoCreate, true},
		{"retention", s.brokerConfigs["log.retention.ms"], "259200000"},
		{"message.max.bytes", s.brokerConfigs["message.max.bytes"], "2000000"},
		{"ignored", strings.Join(s.ignored, " "), "KAFKA_HEAP_OPTS socket.send.buffer.bytes"},
		{"notes", len(s.notes), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	// Kafka's own defaults where kfake's differ.
	s, err := parseSettings(chartEnv())
	if err != nil {
		t.Fatal(err)
	}
	if s.numPartitions != 1 || !s.autoCreate || s.syncWrites {
		t.Errorf("partitions %d, auto create %v, sync %v: want Kafka's 1, true, false", s.numPartitions, s.autoCreate, s.syncWrites)
	}
	if _, ok := s.brokerConfigs["log.retention.ms"]; ok {
		t.Errorf("log.retention.ms set with no retention setting: %v", s.brokerConfigs)
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"the image's own defaults: two client listeners", map[string]string{
			"KAFKA_LISTENERS": "", "KAFKA_ADVERTISED_LISTENERS": "", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "",
		}, "serves exactly one"},
		{"zookeeper", map[string]string{"KAFKA_ZOOKEEPER_CONNECT": "zk:2181"}, "KRaft mode only"},
		{"tls", map[string]string{"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:SSL"}, "PLAINTEXT only"},
		{"controller only", map[string]string{"KAFKA_PROCESS_ROLES": "controller"}, "cannot be a controller alone"},
		{"bad cluster id", map[string]string{"CLUSTER_ID": "not-a-uuid"}, "not a Kafka cluster ID"},
		{"bad number", map[string]string{"KAFKA_NUM_PARTITIONS": "many"}, "invalid value many for configuration num.partitions"},
		{"bad broker setting", map[string]string{"KAFKA_LOG_SEGMENT_BYTES": "big"}, "invalid value big for configuration log.segment.bytes"},
		{"two log dirs", map[string]string{"KAFKA_LOG_DIRS": "/a,/b"}, "one log directory"},
		{"meta-address advertised", map[string]string{"KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://0.0.0.0:9092"}, "nonroutable"},
		{"large node id", map[string]string{"KAFKA_NODE_ID": "5000"}, "node ID from 0 to"},
		{"bad log level", map[string]string{"KAFKA_LOG4J_ROOT_LOGLEVEL": "LOUD"}, "KAFKA_LOG4J_ROOT_LOGLEVEL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := chartEnv()
			for k, v := range tc.set {
				env[k] = v
			}
			_, err := parseSettings(env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestArgumentsOverride(t *testing.T) {
	env := environ([]string{"KAFKA_NODE_ID=1", "A=b=c"}, []string{"KAFKA_NODE_ID=2"})
	if env["KAFKA_NODE_ID"] != "2" || env["A"] != "b=c" {
		t.Errorf("environ: %v", env)
	}
}
