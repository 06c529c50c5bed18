// Package logging sets up the process's logs once: kasa's own lines through
// log/slog, and the verbosity of the upstream parts (klog for Kubernetes,
// logrus for kine).
package logging

import (
	"flag"
	"io"
	"log/slog"
	"strconv"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

// Setup configures every logger of the process and returns kasa's logger.
// verbosity is klog's -v for the Kubernetes components, which log to
// standard error in klog's own format.
func Setup(w io.Writer, debug bool, verbosity int) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", strconv.Itoa(verbosity))

	logrus.SetOutput(w)
	logrus.SetLevel(logrus.InfoLevel)
	if debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	return log
}
