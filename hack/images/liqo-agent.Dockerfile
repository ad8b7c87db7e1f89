# Liqo's firewall agent (hack/liqo-agent, built by hack/liqo.sh agent) for a DaemonSet: it runs in
# the node's network namespace (hostNetwork) and programs nftables there (needs NET_ADMIN).
# The binary is linked against glibc, hence the Debian base.
ARG BASE
FROM ${BASE}
COPY liqo-agent /usr/local/bin/liqo-agent
ENTRYPOINT ["/usr/local/bin/liqo-agent"]
