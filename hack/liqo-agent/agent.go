// The "agent" subcommand (also the default): Liqo's own FirewallConfiguration reconciler for one
// "node" whose nftables live in a chosen network namespace. It lets one host play several nodes, so
// that every packet in liqosec's tests is decided by Liqo's code, not by a model of it.
//
// Nothing here re-implements Liqo: the reconciler, its label sets, finalizer and status handling
// are imported from github.com/liqotech/liqo at the version pinned in go.mod. This file only wires
// them: an API server connection, the node's label sets, and an nftables connection opened in the
// target namespace. The nft monitor stays off: Liqo's monitor watches the agent's own namespace,
// not the target one, so it would re-apply on unrelated host changes and miss drift in the target.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/klog/v2"

	networkingv1beta1 "github.com/liqotech/liqo/apis/networking/v1beta1"
	"github.com/liqotech/liqo/pkg/fabric"
	"github.com/liqotech/liqo/pkg/firewall"
)

func agentMain(args []string) {
	// controller-runtime registers --kubeconfig itself (sigs.k8s.io/controller-runtime/pkg/client/config).
	netns := flag.String("netns", "", "network namespace whose nftables this node owns (a path such as /var/run/netns/NAME); empty: this process's own")
	node := flag.String("node", "", "node name: the firewall-unique label this agent serves and the host of its status conditions")
	host := flag.String("host", "", "host name written in status conditions (Liqo writes its fabric pod's name); default: the node name")
	timeout := flag.Duration("reconcile-timeout", 30*time.Second, "bound on one reconcile")
	parseFlags("agent", args)
	if *node == "" {
		fmt.Fprintln(os.Stderr, "liqo-agent: --node is required")
		os.Exit(2)
	}
	if *host == "" {
		*host = *node
	}
	if err := runAgent(*netns, *node, *host, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "liqo-agent: %v\n", err)
		os.Exit(1)
	}
}

func nftConnection(netns string) (*nftables.Conn, error) {
	if netns == "" {
		return nftables.New()
	}
	// A raw fd kept open for the process's lifetime: an *os.File would be closed by the garbage
	// collector, its number reused, and the rules would then land in the host namespace silently.
	fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", netns, err)
	}
	return nftables.New(nftables.WithNetNSFd(fd))
}

func runAgent(netns, node, host string, timeout time.Duration) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(networkingv1beta1.AddToScheme(scheme))
	utilruntime.Must(corev1.AddToScheme(scheme))
	mgr, err := newManager(scheme, nil)
	if err != nil {
		return err
	}
	conn, err := nftConnection(netns)
	if err != nil {
		return err
	}
	// Liqo's constructor opens a connection in the agent's own namespace; the exported field is
	// replaced with one in the node's namespace before the controller starts.
	reconciler, err := firewall.NewFirewallConfigurationReconcilerWithFinalizer(
		mgr.GetClient(), mgr.GetScheme(), host,
		mgr.GetEventRecorderFor("firewall-controller"),
		[]labels.Set{fabric.ForgeFirewallTargetLabels(), fabric.ForgeFirewallTargetLabelsSingleNode(node)},
	)
	if err != nil {
		return fmt.Errorf("creating Liqo's firewall reconciler: %w", err)
	}
	reconciler.NftConnection = conn

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := reconciler.SetupWithManager(ctx, mgr, false, timeout); err != nil {
		return fmt.Errorf("setting up Liqo's firewall reconciler: %w", err)
	}
	klog.Infof("liqo-agent: node %s (host %s), nftables in %q", node, host, netns)
	return mgr.Start(ctx)
}
