// Command kafka is the stand-in for the docker.io/apache/kafka image in
// kasa's end-to-end suites (tests/images/README.md): one Kafka node that
// speaks the Kafka protocol through kfake, franz-go's implementation of a
// Kafka cluster, and takes its settings as the image does, from CLUSTER_ID
// and the KAFKA_ variables, with its data in the log directory of
// KAFKA_LOG_DIRS.
//
//	/etc/kafka/docker/run [NAME=VALUE...]
//
// Arguments override the environment, as with the image's run script. It
// stops, saving its state, on SIGTERM or SIGINT.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// serverProperties is where the image writes the settings it made of the
// environment.
const serverProperties = "/opt/kafka/config/server.properties"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Environ(), os.Args[1:], os.Stdout, serverProperties)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka stand-in:", err)
		os.Exit(1)
	}
}

// run starts the broker from env and args and serves until ctx ends.
// propsFile, unless empty, gets the settings as server.properties.
func run(ctx context.Context, env, args []string, out io.Writer, propsFile string) error {
	for _, a := range args {
		if !strings.Contains(a, "=") {
			return fmt.Errorf("argument %q: want NAME=VALUE (the image's run script exports its arguments)", a)
		}
	}
	s, err := parseSettings(environ(env, args))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: s.logLevel})).With("component", "kafka")
	if propsFile != "" {
		if err := writeProperties(propsFile, s.properties); err != nil {
			return err
		}
	}
	b, err := start(s, log)
	if err != nil {
		return err
	}
	log.Info("Kafka stand-in started (kfake: the Kafka protocol, not Apache Kafka)",
		"cluster.id", s.clusterID, "node.id", s.nodeID, "listener", s.client, "bound", b.client.bound(),
		"advertised", b.client.Addr(), "log.dir", s.logDir)
	for _, c := range b.controllers {
		log.Info("controller listener open; it closes every connection (no KRaft quorum)", "address", c.Addr())
	}
	log.Info("settings applied", "names", strings.Join(s.applied, " "))
	for _, n := range s.notes {
		log.Warn(n)
	}
	if len(s.ignored) > 0 {
		log.Warn("settings the stand-in does not apply", "names", strings.Join(s.ignored, " "))
	}
	<-ctx.Done()
	log.Info("stopping: saving the state")
	b.close()
	log.Info("stopped")
	return nil
}

// writeProperties writes the settings as a properties file, sorted, as the
// image's configure step does; like it, it fails when the folder is not
// writable.
func writeProperties(path string, props map[string]string) error {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("%s not writable: %w", filepath.Dir(path)+"/", err)
	}
	return nil
}
