// Command liqo-agent runs pieces of Liqo v-pinned (go.mod) for liqosec's tests, one per subcommand:
//
//	liqo-agent [agent] --node=N [--netns=PATH] ...   Liqo's FirewallConfiguration reconciler for one node (agent.go)
//	liqo-agent webhook --port=P --cert-dir=DIR ...   Liqo's FirewallConfiguration admission webhooks (webhook.go)
//	liqo-agent forge < spec.json                     Liqo's objects for a peering, made by Liqo's code (forge.go)
//
// Nothing here re-implements Liqo: every behaviour comes from github.com/liqotech/liqo at the version
// pinned in go.mod; these files only wire Liqo's functions to an API server, a network namespace or
// stdin/stdout. No subcommand (first argument a flag) means "agent", so older callers keep working.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

var subcommands = map[string]func(args []string){
	"agent":   agentMain,
	"webhook": webhookMain,
	"forge":   forgeMain,
}

func main() {
	// controller-runtime registers --kubeconfig on flag.CommandLine itself
	// (sigs.k8s.io/controller-runtime/pkg/client/config); klog adds its own flags there too.
	klog.InitFlags(nil)
	args := os.Args[1:]
	name := "agent"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	run, ok := subcommands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "liqo-agent: unknown subcommand %q (agent, webhook, forge)\n", name)
		os.Exit(2)
	}
	run(args)
}

// parseFlags parses a subcommand's flags, all registered on flag.CommandLine (one subcommand runs
// per process), so that controller-runtime's --kubeconfig and klog's flags work everywhere.
func parseFlags(name string, args []string) {
	flag.CommandLine.Init("liqo-agent "+name, flag.ExitOnError)
	_ = flag.CommandLine.Parse(args)
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "liqo-agent %s: unexpected arguments %v\n", name, flag.Args())
		os.Exit(2)
	}
}

// newManager is the controller-runtime manager every long-running subcommand runs Liqo's code in:
// the API server from --kubeconfig or KUBECONFIG, metrics, probes and leader election off; `with`
// adds a subcommand's own options (the webhook server).
func newManager(scheme *runtime.Scheme, with func(*ctrl.Options)) (ctrl.Manager, error) {
	log.SetLogger(klog.NewKlogr())
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no API server configuration (set --kubeconfig or KUBECONFIG): %w", err)
	}
	opts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                server.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
	}
	if with != nil {
		with(&opts)
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	return mgr, nil
}
