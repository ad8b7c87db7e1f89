"""Where Liqo keeps the facts liqosec reads: label keys and values, written once for every layer.

See docs/semantics.md, "Where Liqo keeps each fact".
"""

from __future__ import annotations

TENANT_PREFIX = "liqo-tenant-"  # a peering's tenant namespace: liqo-tenant-<cluster id>
REMOTE_CLUSTER_ID = "liqo.io/remote-cluster-id"  # on tenant namespaces, virtual nodes, our firewalls
# On tenant namespaces only (Liqo's tenant namespace manager); the namespaces Liqo creates for a
# consumer's offloaded workloads carry REMOTE_CLUSTER_ID alone.
TENANT_NAMESPACE = "liqo.io/tenant-namespace"
ORIGIN = "offloading.liqo.io/origin"  # on pods and reflected EndpointSlices: the consumer they came from
SHADOW_POD = "liqo.io/shadowPod"  # "true" on the local stand-in of a pod offloaded to a provider
NODE_TYPE = "liqo.io/type"
VIRTUAL_NODE = "virtual-node"  # NODE_TYPE's value on a peer's virtual node
NETWORK_TYPE = "ipam.liqo.io/network-type"  # "pod-cidr" on the local pod CIDR Network
CIDR_TYPE = "configuration.liqo.io/cidr-type"  # "pod" on a peer's remapped pod CIDR Networks
SERVICE_NAME = "kubernetes.io/service-name"  # Kubernetes' own, on EndpointSlices
OFFLOADING_NAME = "offloading"  # the name of every NamespaceOffloading
CIDR_TYPE_EXTERNAL = "external"  # CIDR_TYPE's value on a peer's remapped external CIDR Networks
# A Configuration's condition: Liqo has remapped every CIDR of the peer (for its observedGeneration).
REMAP_CONDITION = "NetworkCIDRsConfigured"
# A NamespaceOffloading's per-peer condition saying the ClusterSelector picked that peer.
OFFLOADING_REQUIRED = "OffloadingRequired"
# Local Networks (NETWORK_TYPE values) holding the cluster's own address space, never the Internet.
LOCAL_NETWORK_TYPES: tuple[str, ...] = ("pod-cidr", "service-cidr", "external-cidr", "internal-cidr")
# Kubernetes' cluster DNS: the Service every kubelet points pods at, and where it lives.
DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"

# Liqo's fabric pods (the DaemonSet running the agent that applies FirewallConfigurations): the
# chart's `liqo.selectorLabels` (deployments/liqo/templates/_helpers.tpl) for name "fabric", module
# "networking"; `part-of` is the chart's name ("liqo" unless nameOverride). Each agent writes its
# per-host `Applied` condition under its pod's name (cmd/fabric/main.go: options.PodName).
APP_NAME = "app.kubernetes.io/name"
FABRIC_LABELS: dict[str, str] = {
    APP_NAME: "fabric",
    "app.kubernetes.io/component": "networking",
    "app.kubernetes.io/part-of": "liqo",
}

# Label keys resolution looks objects up by; an indexed view must index these.
INDEXED_LABELS: tuple[str, ...] = (ORIGIN, SHADOW_POD, NODE_TYPE, REMOTE_CLUSTER_ID, NETWORK_TYPE, CIDR_TYPE)
