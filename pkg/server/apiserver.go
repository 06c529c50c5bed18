package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericapiserver "k8s.io/apiserver/pkg/server"
	encryptionconfigcontroller "k8s.io/apiserver/pkg/server/options/encryptionconfig/controller"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"github.com/kasa-io/kasa/pkg/component"
)

// APIServer runs the upstream kube-apiserver in this process.
type APIServer struct {
	// Args returns the flags; called at start, once the datastore is up.
	Args func() []string
	// ReadyzURL and Client probe readiness with the admin identity.
	ReadyzURL string
	Client    *http.Client
	// Wrap, when set, wraps the API server's outermost handler: kasa's
	// join endpoint answers its own paths on the API port this way.
	Wrap func(http.Handler) http.Handler
}

var _ component.Component = (*APIServer)(nil)

// encryptionReload is how often the API server reads its encryption
// configuration for a change (upstream's binary: a minute), so that
// `kasa secrets-encrypt rotate-keys` waits seconds for each step.
const encryptionReload = 5 * time.Second

// Name implements component.Component.
func (a *APIServer) Name() string { return "kube-apiserver" }

// Run implements component.Component.
func (a *APIServer) Run(ctx context.Context, ready func()) error {
	encryptionconfigcontroller.EncryptionConfigFileChangePollDuration = encryptionReload
	s := apiserveroptions.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(a.Args()); err != nil {
		return fmt.Errorf("flags: %w (check --kube-apiserver-arg)", err)
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("flags: %w (check --kube-apiserver-arg)", utilerrors.NewAggregate(errs))
	}
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, completed) }()
	if err := waitReady(ctx, a.Client, a.ReadyzURL, done); err != nil {
		return err
	}
	ready()
	select {
	case err := <-done:
		if ctx.Err() == nil {
			return err // the manager reports a nil error as an unexpected exit
		}
		return nil
	case <-ctx.Done():
	}
	// The API server stops listening at once, then waits for open streams
	// to end. The node's in-process kubelet and kube-proxy cannot be stopped
	// (upstream) and keep theirs open; give the drain a bounded time and
	// leave the rest to the process's exit.
	select {
	case err := <-done:
		if err != nil {
			klog.InfoS("kube-apiserver stopped", "err", err)
		}
	case <-time.After(drainTimeout):
		klog.Info("kube-apiserver: connections still open after the drain time; leaving them to the process exit")
	}
	return nil
}

// run is upstream's app.Run with a.Wrap put around the handler chain of the
// outermost server (the aggregator), before authentication, so that the
// join paths answer on the API port without client credentials.
func (a *APIServer) run(ctx context.Context, opts apiserveroptions.CompletedOptions) error {
	if opts.InformerName == nil {
		name, err := cache.NewInformerName("kube-apiserver")
		if err != nil {
			return err
		}
		opts.InformerName = name
	}
	config, err := apiserverapp.NewConfig(opts)
	if err != nil {
		return err
	}
	if a.Wrap != nil {
		generic := config.Aggregator.GenericConfig
		build := generic.BuildHandlerChainFunc
		generic.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
			return a.Wrap(build(h, c))
		}
	}
	completed, err := config.Complete()
	if err != nil {
		return err
	}
	chain, err := apiserverapp.CreateServerChain(completed)
	if err != nil {
		return err
	}
	prepared, err := chain.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
}

// drainTimeout bounds kube-apiserver's graceful stop.
const drainTimeout = 5 * time.Second

// waitReady polls url until it answers 200, the component ends (done) or ctx
// is cancelled.
func waitReady(ctx context.Context, c *http.Client, url string, done <-chan error) error {
	return component.PollReady(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}, done)
}

// adminHTTPClient is a client that verifies the API server against the
// cluster CA and presents a client certificate.
func adminHTTPClient(caFile, certFile, keyFile string) (*http.Client, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return nil, err
	}
	// The certificate is read at each new connection: the server renews
	// it while running.
	getCert := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		return &c, err
	}
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, GetClientCertificate: getCert, MinVersion: tls.VersionTLS12},
		},
	}, nil
}
