// The "forge" subcommand: the Liqo objects a peering's state would have, made by Liqo's own code.
//
// liqosec reads objects that Liqo writes (tenant namespaces, Configurations and their remapped status,
// offloaded and shadow pods, virtual nodes' labels, NamespaceOffloading statuses, the unknown-source IP).
// Hand-written copies of them in tests drift from what Liqo really writes; this subcommand makes them by
// calling Liqo's functions and reconcilers (from the module pinned in go.mod) against fake clients
// (controller-runtime's fake client, client-go's fake clientset), then lists what they created and
// prints it. Only the input state that another party would have written (the IPAM's local Networks and
// remapped CIDRs, the remote namespacemap controller's mapping phase, a kubelet's pod IP) is set here,
// and each such place says so.
//
// Input: a JSON spec on stdin (see forgeSpec). Output: a YAML stream (--output=yaml, the default) or one
// JSON List (--output=json) on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	liqov1beta1 "github.com/liqotech/liqo/apis/core/v1beta1"
	ipamv1alpha1 "github.com/liqotech/liqo/apis/ipam/v1alpha1"
	networkingv1beta1 "github.com/liqotech/liqo/apis/networking/v1beta1"
	offloadingv1beta1 "github.com/liqotech/liqo/apis/offloading/v1beta1"
	"github.com/liqotech/liqo/pkg/consts"
	"github.com/liqotech/liqo/pkg/liqo-controller-manager/ipmapping"
	extnetcfg "github.com/liqotech/liqo/pkg/liqo-controller-manager/networking/external-network/configuration"
	"github.com/liqotech/liqo/pkg/liqo-controller-manager/networking/external-network/remapping"
	netforge "github.com/liqotech/liqo/pkg/liqo-controller-manager/networking/forge"
	offforge "github.com/liqotech/liqo/pkg/liqo-controller-manager/offloading/forge"
	nsoffctrl "github.com/liqotech/liqo/pkg/liqo-controller-manager/offloading/namespaceoffloading-controller"
	shadowpodctrl "github.com/liqotech/liqo/pkg/liqo-controller-manager/offloading/shadowpod-controller"
	tenantnamespace "github.com/liqotech/liqo/pkg/tenantNamespace"
	foreignclusterutils "github.com/liqotech/liqo/pkg/utils/foreigncluster"
	ipamips "github.com/liqotech/liqo/pkg/utils/ipam/mapping"
	vkforge "github.com/liqotech/liqo/pkg/virtualKubelet/forge"
	liqonodeprovider "github.com/liqotech/liqo/pkg/virtualKubelet/liqoNodeProvider"
)

// forgeSpec is the state to forge Liqo's objects for: the local cluster peered with one peer, which
// is both a provider (namespaces offloaded to it, shadow pods) and a consumer (pods offloaded here).
type forgeSpec struct {
	LocalClusterID    string `json:"localClusterID"`
	PeerClusterID     string `json:"peerClusterID"`
	LocalPodCIDR      string `json:"localPodCIDR"`
	LocalExternalCIDR string `json:"localExternalCIDR"`
	// The peer's CIDRs as it announces them, and as the local IPAM remaps them.
	PeerPodCIDR              string `json:"peerPodCIDR"`
	PeerPodCIDRRemapped      string `json:"peerPodCIDRRemapped"`
	PeerExternalCIDR         string `json:"peerExternalCIDR"`
	PeerExternalCIDRRemapped string `json:"peerExternalCIDRRemapped"`
	// Stage: "pending" (the IPAM has not remapped the peer's Networks yet) or "remapped".
	Stage string `json:"stage"`
	// VirtualNodeName defaults to the peer's cluster id; VirtualNodeLabels go to its node labels.
	VirtualNodeName string `json:"virtualNodeName"`
	// VirtualKubeletIP is the host IP the virtual kubelet reports for its pods (default 192.0.2.10).
	VirtualKubeletIP  string            `json:"virtualKubeletIP"`
	VirtualNodeLabels map[string]string `json:"virtualNodeLabels"`
	// OtherProviders are further peers with a virtual node each, for the ClusterSelector to exclude.
	OtherProviders []forgeProvider `json:"otherProviders"`
	// Namespaces offloaded with a NamespaceOffloading (ClusterSelector, as in its spec).
	Namespaces []forgeNamespace `json:"namespaces"`
	Pods       []forgePod       `json:"pods"`
	// RemappingFirewalls adds the FirewallConfiguration Liqo's remapping code writes for the peer's
	// pod CIDR (stage remapped only): a FirewallConfiguration of Liqo's own, beside liqosec's.
	RemappingFirewalls bool `json:"remappingFirewalls"`
}

type forgeProvider struct {
	ClusterID string            `json:"clusterID"`
	Labels    map[string]string `json:"labels"`
}

type forgeNamespace struct {
	Name            string               `json:"name"`
	ClusterSelector *corev1.NodeSelector `json:"clusterSelector"`
}

// forgePod is a pod of the peering. Kind "offloaded": the peer offloaded it here; IP is its address
// here (its kubelet's). Kind "shadow": a local pod offloaded to the peer; IP is its address in the
// peer's pod CIDR, translated by Liqo's IP translator into the local view.
type forgePod struct {
	Kind      string            `json:"kind"`
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	IP        string            `json:"ip"`
	Labels    map[string]string `json:"labels"`
}

func forgeMain(args []string) {
	stage := flag.String("stage", "", "pending or remapped (overrides the spec's stage; default remapped)")
	output := flag.String("output", "yaml", "yaml (a YAML stream) or json (one List)")
	parseFlags("forge", args)
	log.SetLogger(klog.NewKlogr())

	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading the spec from stdin: %v", err)
	}
	var spec forgeSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		fail("the spec is not valid JSON: %v", err)
	}
	if *stage != "" {
		spec.Stage = *stage
	}
	if err := spec.defaults(); err != nil {
		fail("%v", err)
	}
	objects, err := forgeObjects(context.Background(), &spec)
	if err != nil {
		fail("%v", err)
	}
	if err := printObjects(os.Stdout, objects, *output); err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "liqo-agent forge: "+format+"\n", a...)
	os.Exit(1)
}

func (s *forgeSpec) defaults() error {
	for name, v := range map[string]string{
		"localClusterID": s.LocalClusterID, "peerClusterID": s.PeerClusterID, "localPodCIDR": s.LocalPodCIDR,
		"localExternalCIDR": s.LocalExternalCIDR, "peerPodCIDR": s.PeerPodCIDR, "peerExternalCIDR": s.PeerExternalCIDR,
	} {
		if v == "" {
			return fmt.Errorf("the spec needs %s", name)
		}
	}
	if s.PeerPodCIDRRemapped == "" {
		s.PeerPodCIDRRemapped = s.PeerPodCIDR
	}
	if s.PeerExternalCIDRRemapped == "" {
		s.PeerExternalCIDRRemapped = s.PeerExternalCIDR
	}
	switch s.Stage {
	case "":
		s.Stage = "remapped"
	case "pending", "remapped":
	default:
		return fmt.Errorf("stage must be pending or remapped, not %q", s.Stage)
	}
	if s.VirtualNodeName == "" {
		s.VirtualNodeName = s.PeerClusterID
	}
	if s.VirtualKubeletIP == "" {
		s.VirtualKubeletIP = "192.0.2.10"
	}
	return nil
}

func forgeScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(liqov1beta1.AddToScheme(scheme))
	utilruntime.Must(networkingv1beta1.AddToScheme(scheme))
	utilruntime.Must(ipamv1alpha1.AddToScheme(scheme))
	utilruntime.Must(offloadingv1beta1.AddToScheme(scheme))
	return scheme
}

func newFakeClient(scheme *runtime.Scheme, objs ...client.Object) client.Client {
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithStatusSubresource(&networkingv1beta1.Configuration{}, &ipamv1alpha1.Network{}, &ipamv1alpha1.IP{},
			&offloadingv1beta1.NamespaceOffloading{}, &offloadingv1beta1.NamespaceMap{},
			&offloadingv1beta1.ShadowPod{}, &corev1.Pod{}).
		Build()
}

func forgeObjects(ctx context.Context, spec *forgeSpec) ([]client.Object, error) {
	scheme := forgeScheme()
	recorder := record.NewFakeRecorder(1024)
	local, peer := liqov1beta1.ClusterID(spec.LocalClusterID), liqov1beta1.ClusterID(spec.PeerClusterID)
	var out []client.Object

	// Tenant namespaces: Liqo's tenant namespace manager on a fake clientset.
	clientset := kubefake.NewSimpleClientset()
	nsManager := tenantnamespace.NewManager(clientset, scheme)
	tenants := map[liqov1beta1.ClusterID]string{}
	providers := []forgeProvider{{ClusterID: spec.PeerClusterID, Labels: spec.VirtualNodeLabels}}
	providers = append(providers, spec.OtherProviders...)
	for _, p := range providers {
		ns, err := nsManager.CreateNamespace(ctx, liqov1beta1.ClusterID(p.ClusterID))
		if err != nil {
			return nil, fmt.Errorf("Liqo's tenant namespace manager: %w", err)
		}
		tenants[liqov1beta1.ClusterID(p.ClusterID)] = ns.Name
	}
	namespaces, err := clientset.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range namespaces.Items {
		out = append(out, &namespaces.Items[i])
	}

	cfg, networks, err := forgeConfiguration(ctx, scheme, recorder, spec, tenants[peer])
	if err != nil {
		return nil, err
	}
	out = append(out, cfg)
	out = append(out, networks...)
	if spec.Stage == "remapped" {
		ip, err := forgeUnknownSourceIP(ctx, scheme, recorder, cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, ip)
		if spec.RemappingFirewalls {
			fwcfg, err := forgeRemappingFirewall(ctx, scheme, cfg)
			if err != nil {
				return nil, err
			}
			out = append(out, fwcfg)
		}
	}

	nodes, offloadings, err := forgeOffloading(ctx, scheme, recorder, spec, local, providers, tenants)
	if err != nil {
		return nil, err
	}
	out = append(out, nodes...)
	out = append(out, offloadings...)

	pods, err := forgePods(ctx, scheme, recorder, spec, local, peer, cfg)
	if err != nil {
		return nil, err
	}
	out = append(out, pods...)

	for _, o := range out {
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			return nil, err
		}
		o.GetObjectKind().SetGroupVersionKind(gvk)
		// The fake store's bookkeeping, not Liqo's: owner references keep the empty uid it assigns.
		o.SetManagedFields(nil)
		o.SetResourceVersion("")
	}
	return out, nil
}

// forgeConfiguration: forge.Configuration, then Liqo's external-network ConfigurationReconciler
// (defaulting spec.local, creating the peer's Networks, writing status.remote as it remaps them).
func forgeConfiguration(ctx context.Context, scheme *runtime.Scheme, recorder record.EventRecorder,
	spec *forgeSpec, tenant string) (*networkingv1beta1.Configuration, []client.Object, error) {
	cfg := netforge.Configuration(spec.PeerClusterID, tenant, liqov1beta1.ClusterID(spec.PeerClusterID),
		[]string{spec.PeerPodCIDR}, spec.PeerExternalCIDR)
	// The local cluster's own pod and external CIDR Networks, as Liqo's IPAM keeps them (its input).
	localNetworks := []client.Object{
		localNetwork("pod-cidr", consts.NetworkTypePodCIDR, spec.LocalPodCIDR),
		localNetwork("external-cidr", consts.NetworkTypeExternalCIDR, spec.LocalExternalCIDR),
	}
	cl := newFakeClient(scheme, append(localNetworks, cfg)...)
	reconciler := extnetcfg.NewConfigurationReconciler(cl, scheme, recorder)
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: cfg.Namespace, Name: cfg.Name}}
	if _, err := reconciler.Reconcile(ctx, req); err != nil {
		return nil, nil, fmt.Errorf("Liqo's Configuration reconciler (pending): %w", err)
	}
	if spec.Stage == "remapped" {
		// What Liqo's IPAM does next: it writes each tenant Network's remapped status.cidr.
		var nws ipamv1alpha1.NetworkList
		if err := cl.List(ctx, &nws, client.InNamespace(tenant)); err != nil {
			return nil, nil, err
		}
		for i := range nws.Items {
			nw := &nws.Items[i]
			switch string(nw.Spec.CIDR) {
			case spec.PeerPodCIDR:
				nw.Status.CIDR = networkingv1beta1.CIDR(spec.PeerPodCIDRRemapped)
			case spec.PeerExternalCIDR:
				nw.Status.CIDR = networkingv1beta1.CIDR(spec.PeerExternalCIDRRemapped)
			}
			if err := cl.Status().Update(ctx, nw); err != nil {
				return nil, nil, err
			}
		}
		if _, err := reconciler.Reconcile(ctx, req); err != nil {
			return nil, nil, fmt.Errorf("Liqo's Configuration reconciler (remapped): %w", err)
		}
	}
	out := &networkingv1beta1.Configuration{}
	if err := cl.Get(ctx, req.NamespacedName, out); err != nil {
		return nil, nil, err
	}
	var nws ipamv1alpha1.NetworkList
	if err := cl.List(ctx, &nws); err != nil {
		return nil, nil, err
	}
	networks := make([]client.Object, 0, len(nws.Items))
	for i := range nws.Items {
		networks = append(networks, &nws.Items[i])
	}
	return out, networks, nil
}

func localNetwork(name string, kind consts.NetworkType, cidr string) *ipamv1alpha1.Network {
	return &ipamv1alpha1.Network{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "liqo",
			Labels: map[string]string{consts.NetworkTypeLabelKey: string(kind), consts.NetworkNotRemappedLabelKey: "true"},
		},
		Spec:   ipamv1alpha1.NetworkSpec{CIDR: networkingv1beta1.CIDR(cidr)},
		Status: ipamv1alpha1.NetworkStatus{CIDR: networkingv1beta1.CIDR(cidr)},
	}
}

// forgeRemappingFirewall: Liqo's remapping code (CreateOrUpdateNatMappingCIDR) on the remapped
// Configuration, the pod CIDR's NAT FirewallConfiguration Liqo's gateway applies.
func forgeRemappingFirewall(ctx context.Context, scheme *runtime.Scheme,
	cfg *networkingv1beta1.Configuration) (client.Object, error) {
	cl := newFakeClient(scheme, cfg.DeepCopy())
	// The gateway pod's default interface, which Liqo reads from its own network namespace.
	opts := &remapping.Options{DefaultInterfaceName: "eth0"}
	if err := remapping.CreateOrUpdateNatMappingCIDR(ctx, cl, opts, cfg, scheme, remapping.PodCIDR); err != nil {
		return nil, fmt.Errorf("Liqo's remapping code: %w", err)
	}
	var fwcfgs networkingv1beta1.FirewallConfigurationList
	if err := cl.List(ctx, &fwcfgs); err != nil {
		return nil, err
	}
	if len(fwcfgs.Items) != 1 {
		return nil, fmt.Errorf("Liqo's remapping code wrote %d FirewallConfigurations, not one", len(fwcfgs.Items))
	}
	return &fwcfgs.Items[0], nil
}

// forgeUnknownSourceIP: Liqo's ipmapping ConfigurationReconciler on the remapped Configuration.
func forgeUnknownSourceIP(ctx context.Context, scheme *runtime.Scheme, recorder record.EventRecorder,
	cfg *networkingv1beta1.Configuration) (client.Object, error) {
	cl := newFakeClient(scheme, cfg.DeepCopy())
	reconciler := ipmapping.NewConfigurationReconciler(cl, scheme, recorder)
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: cfg.Namespace, Name: cfg.Name}}
	if _, err := reconciler.Reconcile(ctx, req); err != nil {
		return nil, fmt.Errorf("Liqo's ipmapping Configuration reconciler: %w", err)
	}
	var ips ipamv1alpha1.IPList
	if err := cl.List(ctx, &ips); err != nil {
		return nil, err
	}
	if len(ips.Items) != 1 {
		return nil, fmt.Errorf("Liqo's ipmapping reconciler made %d IPs, not 1", len(ips.Items))
	}
	return &ips.Items[0], nil
}

// forgeOffloading: the virtual nodes (offloading forge.VirtualNode + MutateVirtualNode), their node
// labels (ForgeFakeNodeFromVirtualNode), and each namespace's NamespaceOffloading status as Liqo's
// namespaceoffloading controller writes it, with one NamespaceMap per provider.
func forgeOffloading(ctx context.Context, scheme *runtime.Scheme, recorder record.EventRecorder, spec *forgeSpec,
	local liqov1beta1.ClusterID, providers []forgeProvider, tenants map[liqov1beta1.ClusterID]string,
) (nodes, offloadings []client.Object, err error) {
	cl := newFakeClient(scheme)
	createNode := true
	for _, p := range providers {
		id := liqov1beta1.ClusterID(p.ClusterID)
		name := p.ClusterID
		if id == liqov1beta1.ClusterID(spec.PeerClusterID) {
			name = spec.VirtualNodeName
		}
		vn := offforge.VirtualNode(name, tenants[id])
		opts := &offforge.VirtualNodeOptions{NodeLabels: p.Labels}
		if err := offforge.MutateVirtualNode(ctx, cl, vn, id, opts, &createNode, nil, nil); err != nil {
			return nil, nil, fmt.Errorf("Liqo's MutateVirtualNode: %w", err)
		}
		if err := cl.Create(ctx, vn); err != nil {
			return nil, nil, err
		}
		// The Node the virtual kubelet registers for it (liqo.io/type=virtual-node, the remote cluster id,
		// the VirtualNode's labels): Liqo's node provider builds it; its clients are never used here.
		unused := &rest.Config{Host: "https://127.0.0.1:1"}
		provider := liqonodeprovider.NewLiqoNodeProvider(&liqonodeprovider.InitConfig{
			HomeConfig: unused, RemoteConfig: unused,
			HomeClusterID: local, RemoteClusterID: id, Namespace: tenants[id],
			NodeName: name, ExtraLabels: p.Labels, VirtualNode: vn,
		})
		nodes = append(nodes, provider.GetNode().DeepCopy())
		// The NamespaceMap Liqo's virtual node controller keeps for this provider (its name and labels).
		nm := &offloadingv1beta1.NamespaceMap{ObjectMeta: metav1.ObjectMeta{
			Name: foreignclusterutils.UniqueName(id), Namespace: tenants[id],
			Labels: map[string]string{
				consts.RemoteClusterID:             string(id),
				consts.ReplicationRequestedLabel:   "true",
				consts.ReplicationDestinationLabel: string(id),
			},
		}}
		if err := cl.Create(ctx, nm); err != nil {
			return nil, nil, err
		}
	}
	if len(spec.Namespaces) == 0 {
		return nodes, nil, nil
	}

	reconciler, err := namespaceOffloadingReconciler(cl, scheme, recorder, local)
	if err != nil {
		return nil, nil, err
	}
	for _, ns := range spec.Namespaces {
		nsoff := &offloadingv1beta1.NamespaceOffloading{
			ObjectMeta: metav1.ObjectMeta{Name: consts.DefaultNamespaceOffloadingName, Namespace: ns.Name},
			Spec: offloadingv1beta1.NamespaceOffloadingSpec{
				NamespaceMappingStrategy: offloadingv1beta1.DefaultNameMappingStrategyType,
				PodOffloadingStrategy:    offloadingv1beta1.LocalAndRemotePodOffloadingStrategyType,
			},
		}
		if ns.ClusterSelector != nil {
			nsoff.Spec.ClusterSelector = *ns.ClusterSelector
		}
		if err := cl.Create(ctx, nsoff); err != nil {
			return nil, nil, err
		}
		// The Namespace itself: the reconciler labels it for scheduling.
		if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name}}); err != nil {
			return nil, nil, err
		}
	}
	reconcileAll := func() error {
		for _, ns := range spec.Namespaces {
			req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns.Name, Name: consts.DefaultNamespaceOffloadingName}}
			if _, err := reconciler.Reconcile(ctx, req); err != nil {
				return fmt.Errorf("Liqo's NamespaceOffloading reconciler: %w", err)
			}
		}
		return nil
	}
	if err := reconcileAll(); err != nil {
		return nil, nil, err
	}
	// What Liqo's namespacemap controller on each selected provider reports back: the remote namespace
	// exists (phase Accepted) for every desired mapping.
	var nms offloadingv1beta1.NamespaceMapList
	if err := cl.List(ctx, &nms); err != nil {
		return nil, nil, err
	}
	for i := range nms.Items {
		nm := &nms.Items[i]
		if len(nm.Spec.DesiredMapping) == 0 {
			continue
		}
		nm.Status.CurrentMapping = map[string]offloadingv1beta1.RemoteNamespaceStatus{}
		for localNs, remoteNs := range nm.Spec.DesiredMapping {
			nm.Status.CurrentMapping[localNs] = offloadingv1beta1.RemoteNamespaceStatus{
				RemoteNamespace: remoteNs, Phase: offloadingv1beta1.MappingAccepted,
			}
		}
		if err := cl.Status().Update(ctx, nm); err != nil {
			return nil, nil, err
		}
	}
	if err := reconcileAll(); err != nil {
		return nil, nil, err
	}
	var list offloadingv1beta1.NamespaceOffloadingList
	if err := cl.List(ctx, &list); err != nil {
		return nil, nil, err
	}
	for i := range list.Items {
		offloadings = append(offloadings, &list.Items[i])
	}
	return nodes, offloadings, nil
}

// namespaceOffloadingReconciler wires Liqo's reconciler as its SetupWithManager does (which also
// initialises its private set of known namespaces), on a manager that is never started: Reconcile is
// then called directly, on the fake client.
func namespaceOffloadingReconciler(cl client.Client, scheme *runtime.Scheme, recorder record.EventRecorder,
	local liqov1beta1.ClusterID) (*nsoffctrl.NamespaceOffloadingReconciler, error) {
	mgr, err := ctrl.NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, ctrl.Options{ // never contacted
		Scheme:                 scheme,
		Metrics:                server.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, fmt.Errorf("a never-started manager for Liqo's NamespaceOffloading reconciler: %w", err)
	}
	reconciler := &nsoffctrl.NamespaceOffloadingReconciler{Client: cl, Recorder: recorder, LocalCluster: local}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up Liqo's NamespaceOffloading reconciler: %w", err)
	}
	return reconciler, nil
}

// forgePods: a pod the peer offloaded here (the peer's virtual kubelet forges its ShadowPod with
// RemoteShadowPod, Liqo's shadowpod controller here makes the pod), and a local pod offloaded to the
// peer as the local virtual kubelet reflects it (LocalPod with the IP translator, LocalPodOffloadedLabel).
func forgePods(ctx context.Context, scheme *runtime.Scheme, recorder record.EventRecorder, spec *forgeSpec,
	local, peer liqov1beta1.ClusterID, cfg *networkingv1beta1.Configuration) ([]client.Object, error) {
	var out []client.Object
	opts := vkforge.NewEmptyForgingOpts()
	for _, p := range spec.Pods {
		switch p.Kind {
		case "offloaded":
			// The peer's virtual kubelet: the peer is its local cluster, this cluster its remote one.
			vkforge.Init(peer, local, string(local), spec.VirtualKubeletIP)
			peerPod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels},
				Spec:       podSpec(string(local)),
			}
			shadow := vkforge.RemoteShadowPod(peerPod, nil, p.Namespace, &opts)
			cl := newFakeClient(scheme, shadow)
			reconciler := &shadowpodctrl.Reconciler{Client: cl, Scheme: scheme, Recorder: recorder}
			req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}}
			if _, err := reconciler.Reconcile(ctx, req); err != nil {
				return nil, fmt.Errorf("Liqo's shadowpod controller: %w", err)
			}
			pod := &corev1.Pod{}
			if err := cl.Get(ctx, req.NamespacedName, pod); err != nil {
				return nil, fmt.Errorf("Liqo's shadowpod controller made no pod %s: %w", req.NamespacedName, err)
			}
			// The provider's kubelet runs it: phase and IP are its, not Liqo's.
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP, PodIPs: []corev1.PodIP{{IP: p.IP}}}
			out = append(out, pod)
		case "shadow":
			if spec.Stage != "remapped" {
				continue // Liqo's translator refuses to map until the Configuration is remapped
			}
			vkforge.Init(local, peer, spec.VirtualNodeName, spec.VirtualKubeletIP)
			localPod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels},
				Spec:       podSpec(spec.VirtualNodeName),
			}
			// The pod running on the peer, in the peer's pod CIDR.
			remote := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP, PodIPs: []corev1.PodIP{{IP: p.IP}}}}
			var terr error
			translator := func(original string) string {
				translated, err := ipamips.MapAddressWithConfiguration(cfg, original)
				if err != nil {
					terr = err
				}
				return translated
			}
			pod := vkforge.LocalPod(localPod, remote, translator, 0)
			if terr != nil {
				return nil, fmt.Errorf("Liqo's IP translator: %w", terr)
			}
			pod.Spec = localPod.Spec
			if apply, needed := vkforge.LocalPodOffloadedLabel(localPod); needed {
				if pod.Labels == nil {
					pod.Labels = map[string]string{}
				}
				for k, v := range apply.Labels {
					pod.Labels[k] = v
				}
			}
			out = append(out, pod)
		default:
			return nil, fmt.Errorf("pod %s/%s: kind must be offloaded or shadow, not %q", p.Namespace, p.Name, p.Kind)
		}
	}
	return out, nil
}

func podSpec(node string) corev1.PodSpec {
	return corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}}
}

func printObjects(w io.Writer, objects []client.Object, output string) error {
	sort.SliceStable(objects, func(i, j int) bool {
		return objects[i].GetObjectKind().GroupVersionKind().Kind < objects[j].GetObjectKind().GroupVersionKind().Kind
	})
	switch output {
	case "json":
		items := make([]json.RawMessage, 0, len(objects))
		for _, o := range objects {
			b, err := json.Marshal(o)
			if err != nil {
				return err
			}
			items = append(items, b)
		}
		return json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	case "yaml":
		for _, o := range objects {
			b, err := yaml.Marshal(o)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("--output must be yaml or json, not %q", output)
	}
}
