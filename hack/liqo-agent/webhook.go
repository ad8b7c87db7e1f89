// The "webhook" subcommand: Liqo's own admission webhooks for FirewallConfigurations, the two that
// Liqo's webhook Deployment serves (cmd/webhook/main.go: fwcfgwh.NewValidator(mgr.GetClient()) and
// fwcfgwh.NewMutator()), at Liqo's paths, on a loopback HTTPS server. The API server reaches it through
// Mutating/ValidatingWebhookConfigurations registered by the caller (test/harness/liqo_webhook.py),
// so every FirewallConfiguration written in liqosec's tests passes Liqo's own admission.
//
// Only the wiring is here: a controller-runtime manager (the validator lists FirewallConfigurations
// through the manager's cached client, as in Liqo), its webhook server, no metrics, no probes, no
// leader election.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	networkingv1beta1 "github.com/liqotech/liqo/apis/networking/v1beta1"
	fwcfgwh "github.com/liqotech/liqo/pkg/webhooks/firewallconfiguration"
)

// Liqo's paths (deployments/liqo/templates/webhooks/liqo-{mutating,validating}-webhook.yaml).
const (
	validatePath = "/validate/firewallconfigurations"
	mutatePath   = "/mutate/firewallconfigurations"
)

func webhookMain(args []string) {
	host := flag.String("bind-host", "127.0.0.1", "address the HTTPS server listens on")
	port := flag.Int("port", 9443, "port the HTTPS server listens on")
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key (ignored when --tls-cert-file and --tls-key-file are set)")
	certFile := flag.String("tls-cert-file", "", "serving certificate (PEM)")
	keyFile := flag.String("tls-key-file", "", "serving key (PEM)")
	parseFlags("webhook", args)

	opts := webhook.Options{Host: *host, Port: *port, CertDir: *certDir}
	switch {
	case *certFile != "" && *keyFile != "":
		if filepath.Dir(*certFile) != filepath.Dir(*keyFile) {
			fmt.Fprintln(os.Stderr, "liqo-agent webhook: --tls-cert-file and --tls-key-file must be in one directory")
			os.Exit(2)
		}
		opts.CertDir, opts.CertName, opts.KeyName = filepath.Dir(*certFile), filepath.Base(*certFile), filepath.Base(*keyFile)
	case *certFile != "" || *keyFile != "":
		fmt.Fprintln(os.Stderr, "liqo-agent webhook: --tls-cert-file and --tls-key-file go together")
		os.Exit(2)
	case *certDir == "":
		fmt.Fprintln(os.Stderr, "liqo-agent webhook: --cert-dir or --tls-cert-file/--tls-key-file is required")
		os.Exit(2)
	}
	if err := runWebhook(opts); err != nil {
		fmt.Fprintf(os.Stderr, "liqo-agent webhook: %v\n", err)
		os.Exit(1)
	}
}

func runWebhook(opts webhook.Options) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(networkingv1beta1.AddToScheme(scheme))
	mgr, err := newManager(scheme, func(o *ctrl.Options) { o.WebhookServer = webhook.NewServer(opts) })
	if err != nil {
		return err
	}
	// Exactly Liqo's two FirewallConfiguration handlers, as cmd/webhook/main.go registers them.
	mgr.GetWebhookServer().Register(validatePath, fwcfgwh.NewValidator(mgr.GetClient()))
	mgr.GetWebhookServer().Register(mutatePath, fwcfgwh.NewMutator())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	klog.Infof("liqo-agent webhook: serving %s and %s on https://%s:%d", validatePath, mutatePath, opts.Host, opts.Port)
	return mgr.Start(ctx)
}
