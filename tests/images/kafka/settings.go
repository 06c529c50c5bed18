package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// imageDefaults are the apache/kafka image's defaults (its configureDefaults
// script), set for each variable that is unset or empty: a single-node KRaft
// cluster. Note that its listeners are two client listeners, which the
// stand-in does not serve (see clientListener).
var imageDefaults = map[string]string{
	"CLUSTER_ID":                                     "5L6g3nShT-eMCtK--X86sw",
	"KAFKA_NODE_ID":                                  "1",
	"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
	"KAFKA_LISTENERS":                                "PLAINTEXT://localhost:29092,CONTROLLER://localhost:29093,PLAINTEXT_HOST://0.0.0.0:9092",
	"KAFKA_ADVERTISED_LISTENERS":                     "PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092",
	"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
	"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
	"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
	"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
	"KAFKA_PROCESS_ROLES":                            "broker,controller",
	"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:29093",
	"KAFKA_INTER_BROKER_LISTENER_NAME":               "PLAINTEXT",
	"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
	"KAFKA_LOG_DIRS":                                 "/tmp/kraft-combined-logs",
}

// notProperties are KAFKA_ variables the image does not turn into
// server.properties entries (its kafka-propertiesSpec.json), and the JVM
// settings a Go program has no use for.
var notProperties = map[string]bool{
	"KAFKA_VERSION": true, "KAFKA_HEAP_OPTS": true, "KAFKA_LOG4J_OPTS": true, "KAFKA_OPTS": true,
	"KAFKA_JMX_OPTS": true, "KAFKA_JVM_PERFORMANCE_OPTS": true, "KAFKA_GC_LOG_OPTS": true,
	"KAFKA_LOG4J_ROOT_LOGLEVEL": true, "KAFKA_LOG4J_LOGGERS": true, "KAFKA_TOOLS_LOG4J_LOGLEVEL": true,
	"KAFKA_JMX_PORT": true, "KAFKA_JMX_HOSTNAME": true,
}

// own are the properties the stand-in reads itself.
var own = map[string]bool{
	"node.id": true, "process.roles": true, "listeners": true, "advertised.listeners": true,
	"listener.security.protocol.map": true, "controller.listener.names": true,
	"inter.broker.listener.name": true, "controller.quorum.voters": true,
	"log.dirs": true, "log.dir": true, "num.partitions": true, "auto.create.topics.enable": true,
	"log.retention.hours": true, "log.retention.minutes": true, "log.retention.ms": true,
	"log.roll.hours": true, "log.roll.ms": true, "log.flush.interval.messages": true,
}

// kfakeConfigs are the broker settings kfake implements, passed to it as they
// are; the value says whether it must be a number.
var kfakeConfigs = map[string]bool{
	"compression.type": false, "log.message.timestamp.type": false,
	"default.replication.factor": true, "fetch.max.bytes": true, "group.max.size": true,
	"group.min.session.timeout.ms": true, "group.max.session.timeout.ms": true,
	"group.consumer.heartbeat.interval.ms": true, "group.consumer.session.timeout.ms": true,
	"log.cleaner.backoff.ms": true, "log.retention.bytes": true, "log.segment.bytes": true,
	"max.incremental.fetch.session.cache.slots": true, "message.max.bytes": true,
	"min.insync.replicas": true, "offsets.retention.minutes": true,
	"offsets.retention.check.interval.ms": true, "transaction.max.timeout.ms": true,
	"transactional.id.expiration.ms": true,
}

// oneNode are settings whose given value is what a cluster of one node does
// anyway: applied by being true already.
var oneNode = map[string]string{
	"offsets.topic.replication.factor":         "1",
	"transaction.state.log.replication.factor": "1",
	"transaction.state.log.min.isr":            "1",
	"group.initial.rebalance.delay.ms":         "0",
}

// Kafka's defaults where kfake's differ.
const (
	kafkaNumPartitions      = 1
	kafkaMaxSessionTimeout  = 30 * time.Minute
	kafkaDefaultProtocolMap = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
)

// listener is one entry of listeners or advertised.listeners.
type listener struct {
	name, host, port string
}

func (l listener) String() string {
	return l.name + "://" + net.JoinHostPort(l.host, l.port)
}

// settings is everything the stand-in takes from its environment, resolved
// and checked once.
type settings struct {
	clusterID string
	nodeID    int32
	// client is the one listener clients connect to; advertised is what
	// metadata tells them (a port 0 is replaced by the bound port).
	client     listener
	advertised listener
	// controllers are opened, and every connection to them closed.
	controllers []listener
	logDir      string

	numPartitions int
	autoCreate    bool
	syncWrites    bool
	// brokerConfigs go to kfake as they are.
	brokerConfigs map[string]string

	logLevel slog.Level
	// properties is every KAFKA_ setting as server.properties names it;
	// applied and ignored sort them for the start report.
	properties map[string]string
	applied    []string
	ignored    []string
	notes      []string
}

// environ turns KEY=VALUE lines into a map; a later line wins, as the
// image's run script exports its arguments over the environment.
func environ(lists ...[]string) map[string]string {
	env := map[string]string{}
	for _, list := range lists {
		for _, kv := range list {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

// envKeyPattern finds the single underscores of a variable's name.
var envKeyPattern = regexp.MustCompile("[^_]_[^_]")

// propertyName turns the name after KAFKA_ into a property name as the
// image does: "_" is ".", "__" is "_", "___" is "-", all in lower case.
func propertyName(key string) string {
	key = envKeyPattern.ReplaceAllStringFunc(key, func(s string) string {
		return strings.ReplaceAll(s, "_", ".")
	})
	key = strings.ReplaceAll(key, "___", "-")
	return strings.ToLower(strings.ReplaceAll(key, "__", "_"))
}

// parseSettings reads the environment as the apache/kafka image's run,
// configure and launch scripts and Kafka itself would, and refuses what the
// stand-in cannot do.
func parseSettings(env map[string]string) (*settings, error) {
	if env["KAFKA_ZOOKEEPER_CONNECT"] != "" {
		return nil, errors.New("KAFKA_ZOOKEEPER_CONNECT is set: the stand-in runs KRaft mode only (set KAFKA_PROCESS_ROLES instead)")
	}
	env = maps.Clone(env)
	for k, v := range imageDefaults {
		if env[k] == "" {
			env[k] = v
		}
	}
	s := &settings{properties: map[string]string{}, brokerConfigs: map[string]string{}}
	for k, v := range env {
		if strings.HasPrefix(k, "KAFKA_") && !notProperties[k] {
			s.properties[propertyName(strings.TrimPrefix(k, "KAFKA_"))] = v
		}
	}
	for k := range notProperties {
		if _, ok := env[k]; ok && k != "KAFKA_LOG4J_ROOT_LOGLEVEL" {
			s.ignored = append(s.ignored, k)
		}
	}
	var err error
	if s.logLevel, err = logLevel(env["KAFKA_LOG4J_ROOT_LOGLEVEL"]); err != nil {
		return nil, err
	}
	s.clusterID = env["CLUSTER_ID"]
	if raw, err := base64.RawURLEncoding.DecodeString(s.clusterID); err != nil || len(raw) != 16 {
		return nil, fmt.Errorf("CLUSTER_ID %q is not a Kafka cluster ID (22 characters of base64url for 16 bytes, what kafka-storage.sh random-uuid prints)", s.clusterID)
	}
	p := s.properties

	node, err := number(p, "node.id", -1)
	if err != nil {
		return nil, err
	}
	// The node ID is made by adding placeholder brokers below it (see
	// start), so it is kept small.
	if node < 0 || node > maxNodeID {
		return nil, fmt.Errorf("node.id %d: the stand-in takes a node ID from 0 to %d", node, maxNodeID)
	}
	s.nodeID = int32(node)

	roles := list(p["process.roles"])
	switch {
	case !slices.Contains(roles, "broker"):
		return nil, fmt.Errorf("process.roles=%s: the stand-in is a broker (and its own controller); it cannot be a controller alone", p["process.roles"])
	case !slices.Contains(roles, "controller"):
		s.notes = append(s.notes, "process.roles=broker: the stand-in is its own controller, whatever the roles say")
	}
	if err := s.parseListeners(p); err != nil {
		return nil, err
	}
	if voters := list(p["controller.quorum.voters"]); len(voters) > 0 {
		for _, v := range voters {
			if id, _, _ := strings.Cut(v, "@"); id != strconv.Itoa(int(s.nodeID)) {
				s.notes = append(s.notes, fmt.Sprintf("controller.quorum.voters names node %s: the stand-in is a cluster of one and asks no other node", id))
			}
		}
	}

	dirs := list(p["log.dirs"])
	if len(dirs) == 0 {
		dirs = list(p["log.dir"])
	}
	switch len(dirs) {
	case 0:
		s.logDir = "/tmp/kafka-logs" // Kafka's default log.dir
	case 1:
		s.logDir = dirs[0]
	default:
		return nil, fmt.Errorf("log.dirs=%s: the stand-in keeps one log directory", p["log.dirs"])
	}

	parts, err := number(p, "num.partitions", kafkaNumPartitions)
	if err != nil {
		return nil, err
	}
	if parts < 1 {
		return nil, fmt.Errorf("invalid value %d for configuration num.partitions: value must be at least 1", parts)
	}
	s.numPartitions = int(parts)
	s.autoCreate = !strings.EqualFold(p["auto.create.topics.enable"], "false")

	// Kafka's precedence: ms, then minutes, then hours.
	if err := s.millis(p, "log.retention.ms", "log.retention.minutes", "log.retention.hours"); err != nil {
		return nil, err
	}
	if err := s.millis(p, "log.roll.ms", "", "log.roll.hours"); err != nil {
		return nil, err
	}
	flush, err := number(p, "log.flush.interval.messages", 0)
	if err != nil {
		return nil, err
	}
	s.syncWrites = flush == 1

	for _, k := range slices.Sorted(maps.Keys(p)) {
		v := p[k]
		numeric, ok := kfakeConfigs[k]
		holds, isOneNode := oneNode[k]
		switch {
		case own[k]:
			s.applied = append(s.applied, k)
		case ok:
			if numeric {
				if _, err := strconv.ParseInt(v, 10, 64); err != nil {
					return nil, fmt.Errorf("invalid value %s for configuration %s: not a number", v, k)
				}
			}
			s.brokerConfigs[k] = v
			s.applied = append(s.applied, k)
		case isOneNode && holds == v:
			s.applied = append(s.applied, k)
		default:
			s.ignored = append(s.ignored, k)
		}
	}
	slices.Sort(s.ignored)
	return s, nil
}

// maxNodeID bounds node.id: each ID below it costs a placeholder broker at start.
const maxNodeID = 1000

// parseListeners finds the client listener, its advertised address and the
// controller listeners.
func (s *settings) parseListeners(p map[string]string) error {
	ls, err := listeners("listeners", p["listeners"])
	if err != nil {
		return err
	}
	protocolMap := p["listener.security.protocol.map"]
	if protocolMap == "" {
		protocolMap = kafkaDefaultProtocolMap
	}
	protocols := map[string]string{}
	for _, e := range list(protocolMap) {
		name, proto, ok := strings.Cut(e, ":")
		if !ok {
			return fmt.Errorf("listener.security.protocol.map: %q is not NAME:PROTOCOL", e)
		}
		protocols[name] = proto
	}
	controllerNames := list(p["controller.listener.names"])
	var clients []listener
	for _, l := range ls {
		proto, ok := protocols[l.name]
		if !ok {
			return fmt.Errorf("listener %s: no security protocol for %s in listener.security.protocol.map", l, l.name)
		}
		if slices.Contains(controllerNames, l.name) {
			s.controllers = append(s.controllers, l)
			continue
		}
		if proto != "PLAINTEXT" {
			return fmt.Errorf("listener %s uses %s: the stand-in speaks PLAINTEXT only (no TLS, no SASL)", l, proto)
		}
		clients = append(clients, l)
	}
	if len(clients) != 1 {
		names := make([]string, len(clients))
		for i, l := range clients {
			names[i] = l.String()
		}
		return fmt.Errorf("listeners has %d client listeners (%s): the stand-in serves exactly one; set KAFKA_LISTENERS and KAFKA_ADVERTISED_LISTENERS with one, as the catalog chart does", len(clients), strings.Join(names, ", "))
	}
	s.client = clients[0]

	// advertised.listeners defaults to listeners; an empty host is the
	// machine's name.
	s.advertised = s.client
	if v := p["advertised.listeners"]; v != "" {
		adv, err := listeners("advertised.listeners", v)
		if err != nil {
			return err
		}
		for _, a := range adv {
			if a.name == s.client.name {
				s.advertised = a
			}
		}
	}
	if s.advertised.host == "0.0.0.0" || s.advertised.host == "::" {
		return fmt.Errorf("advertised.listeners cannot use the nonroutable meta-address %s: use a routable name or address", s.advertised.host)
	}
	return nil
}

// listenerPattern is NAME://HOST:PORT, the host empty or in brackets.
var listenerPattern = regexp.MustCompile(`^([A-Za-z0-9_]+)://\[?([0-9a-zA-Z\-%._:]*?)\]?:([0-9]+)$`)

func listeners(key, v string) ([]listener, error) {
	var ls []listener
	for _, e := range list(v) {
		m := listenerPattern.FindStringSubmatch(e)
		if m == nil {
			return nil, fmt.Errorf("%s: %q is not NAME://HOST:PORT", key, e)
		}
		ls = append(ls, listener{name: strings.ToUpper(m[1]), host: m[2], port: m[3]})
	}
	if len(ls) == 0 {
		return nil, fmt.Errorf("%s is empty", key)
	}
	return ls, nil
}

// millis resolves a duration Kafka takes in ms, minutes or hours into ms for
// kfake; it passes nothing when none is set.
func (s *settings) millis(p map[string]string, ms, minutes, hours string) error {
	for _, u := range []struct {
		key  string
		unit int64
	}{{ms, 1}, {minutes, 60_000}, {hours, 3_600_000}} {
		v, ok := p[u.key]
		if u.key == "" || !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid value %s for configuration %s: not a number", v, u.key)
		}
		if n >= 0 {
			n *= u.unit
		}
		s.brokerConfigs[ms] = strconv.FormatInt(n, 10)
		return nil
	}
	return nil
}

func number(p map[string]string, key string, def int64) (int64, error) {
	v, ok := p[key]
	if !ok {
		if def < 0 {
			return 0, fmt.Errorf("%s is not set (KAFKA_%s)", key, strings.ToUpper(strings.ReplaceAll(key, ".", "_")))
		}
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid value %s for configuration %s: not a number", v, key)
	}
	return n, nil
}

// list splits a comma-separated setting, dropping blanks.
func list(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// logLevel maps log4j's root level (the image's KAFKA_LOG4J_ROOT_LOGLEVEL,
// INFO by default) to slog's.
func logLevel(v string) (slog.Level, error) {
	switch strings.ToUpper(v) {
	case "", "INFO":
		return slog.LevelInfo, nil
	case "ERROR", "FATAL", "OFF":
		return slog.LevelError, nil
	case "WARN":
		return slog.LevelWarn, nil
	case "DEBUG":
		return slog.LevelDebug, nil
	case "TRACE", "ALL":
		return slog.LevelDebug - 4, nil
	}
	return 0, fmt.Errorf("KAFKA_LOG4J_ROOT_LOGLEVEL=%s: want ERROR, WARN, INFO, DEBUG or TRACE", v)
}
