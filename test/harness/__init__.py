"""Tooling for liqosec's tests, demo and benchmarks: never shipped in the wheel or the image.

A local control plane (etcd, kube-apiserver, kube-controller-manager built from Go modules), the
demo, node and endpoint network namespaces, Liqo's agent per node, and a model of that agent kept
only as a fast offline check (test/dataplane/test_agent_fidelity.py holds it to the real agent).
"""
