"""Liqo's own FirewallConfiguration admission webhooks, served by hack/liqo-agent and registered on a test API server.

Why: in a Liqo cluster every FirewallConfiguration write passes Liqo's mutating webhook (names
unnamed rules with uuids) and validating webhook (refuses duplicate or empty rule names, a table
rename, a second FirewallConfiguration with the same table and labels, bad chains). Tests that write
FirewallConfigurations must meet the same admission, made by Liqo's code (`liqo-agent webhook`
registers `fwcfgwh.NewValidator`/`fwcfgwh.NewMutator` from the pinned module), not by a model.

Guarantees:
- The webhook configurations are Liqo v1.2.0's chart's (deployments/liqo/templates/webhooks/
  liqo-{mutating,validating}-webhook.yaml, FirewallConfiguration entries only): names, rules,
  failurePolicy Fail, objectSelector ``liqo.io/webhook-skip NotIn ["true"]``, sideEffects None,
  admissionReviewVersions v1 and v1beta1; only ``clientConfig`` differs: a loopback URL and a
  caBundle instead of a Service.
- ``start()`` returns only once a dry-run create of a FirewallConfiguration with an unnamed rule comes
  back with the rule named by the mutating webhook (so both webhooks are registered and answering);
  otherwise it stops what it started and raises ``LiqoWebhookError`` with the process's log tail.
- ``stop()`` removes the two configurations (best effort) and stops the process (SIGTERM, then
  SIGKILL after a grace); the process also dies with its parent. Idempotent.

Caller duties: start the control plane first and stop this before it (``with`` nests right).
"""

from __future__ import annotations

import base64
import copy
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from harness import pki
from harness.agents import _Proc, _spawn, find_agent
from harness.controlplane import ControlPlane, _free_port

log = logging.getLogger(__name__)

MUTATE_PATH = "/mutate/firewallconfigurations"
VALIDATE_PATH = "/validate/firewallconfigurations"
CONFIGURATION_NAME = "liqo-webhook"  # the chart's `liqo.prefixedName` for the webhook module
SKIP_LABEL = "liqo.io/webhook-skip"
START_TIMEOUT_S = 60.0
POLL_S = 0.2
PROBE_NAMESPACE = "default"

_RULES = [
    {
        "operations": ["CREATE", "UPDATE"],
        "apiGroups": ["networking.liqo.io"],
        "apiVersions": ["v1beta1"],
        "resources": ["firewallconfigurations"],
    }
]
_OBJECT_SELECTOR = {"matchExpressions": [{"key": SKIP_LABEL, "operator": "NotIn", "values": ["true"]}]}


class LiqoWebhookError(RuntimeError):
    """Liqo's webhook did not start or does not answer; the message carries its log tail."""


def _webhook(name: str, url: str, ca_bundle: str) -> dict[str, Any]:
    return {
        "name": name,
        "admissionReviewVersions": ["v1", "v1beta1"],
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "rules": copy.deepcopy(_RULES),
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "objectSelector": copy.deepcopy(_OBJECT_SELECTOR),
    }


def webhook_configurations(port: int, ca_pem: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chart's Mutating and Validating configurations for FirewallConfigurations, pointing at 127.0.0.1:port."""
    ca_bundle = base64.b64encode(ca_pem).decode()
    base = f"https://127.0.0.1:{port}"
    labels = {"liqo.io/webhook": "true"}  # the chart's own label; its Helm labels say nothing here
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME, "labels": labels},
        "webhooks": [_webhook("firewallconfiguration.mutate.liqo.io", base + MUTATE_PATH, ca_bundle)],
    }
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME, "labels": labels},
        "webhooks": [_webhook("firewallconfiguration.validate.liqo.io", base + VALIDATE_PATH, ca_bundle)],
    }
    return mutating, validating


def probe_firewall(name: str = "liqo-webhook-probe") -> dict[str, Any]:
    """A valid FirewallConfiguration whose one rule has no name: only Liqo's mutating webhook names it."""
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "FirewallConfiguration",
        "metadata": {"name": name, "namespace": PROBE_NAMESPACE},
        "spec": {
            "table": {
                "name": "liqo_webhook_probe",
                "family": "IPV4",
                "chains": [
                    {
                        "name": "forward",
                        "hook": "forward",
                        "type": "filter",
                        "priority": 0,
                        "policy": "accept",
                        "rules": {"filterRules": [{"action": "accept", "counter": False, "match": []}]},
                    }
                ],
            }
        },
    }


class LiqoWebhook:
    """`liqo-agent webhook` on a loopback port, registered with the control plane's API server."""

    def __init__(self, control_plane: ControlPlane, *, agent: Path | None = None, work_dir: Path | None = None) -> None:
        self.control_plane = control_plane
        self.agent = agent or find_agent()
        self.work_dir = work_dir or control_plane.work_dir / "liqo-webhook"
        self.port = 0
        self._proc: _Proc | None = None
        self._registered = False

    # -- public surface -------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self._proc is not None:
            raise LiqoWebhookError("Liqo's webhook already started")
        certs = self.work_dir / "pki"
        pki.write_pki(certs, hosts=["127.0.0.1"])
        self.port = _free_port()
        self._proc = _spawn(
            "liqo-webhook",
            [
                str(self.agent),
                "webhook",
                f"--kubeconfig={self.control_plane.kubeconfig_path}",
                "--bind-host=127.0.0.1",
                f"--port={self.port}",
                f"--tls-cert-file={certs / 'serving.crt'}",
                f"--tls-key-file={certs / 'serving.key'}",
            ],
            self.work_dir,
        )
        try:
            self._register((certs / "ca.crt").read_bytes())
            self._wait_answering(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Liqo's FirewallConfiguration webhooks ready", extra={"port": self.port})

    def stop(self) -> None:
        if self._registered:
            self._unregister()
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def log_tail(self) -> str:
        return self._proc.tail() if self._proc is not None else ""

    def __enter__(self) -> LiqoWebhook:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _register(self, ca_pem: bytes) -> None:
        from kubernetes import client

        mutating, validating = webhook_configurations(self.port, ca_pem)
        with self.control_plane.api_client() as api:
            admission: Any = client.AdmissionregistrationV1Api(api)  # takes plain dicts too
            self._registered = True
            admission.create_mutating_webhook_configuration(mutating)
            admission.create_validating_webhook_configuration(validating)

    def _unregister(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            with self.control_plane.api_client() as api:
                admission = client.AdmissionregistrationV1Api(api)
                for delete in (
                    admission.delete_mutating_webhook_configuration,
                    admission.delete_validating_webhook_configuration,
                ):
                    try:
                        delete(CONFIGURATION_NAME, _request_timeout=10)
                    except ApiException as err:
                        if err.status != 404:
                            log.warning("could not remove Liqo's webhook configuration: %s", err)
        except OSError as err:  # the API server already gone: nothing left to clean
            log.warning("could not remove Liqo's webhook configurations: %s", err)
        self._registered = False

    def _wait_answering(self, timeout: float) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with self.control_plane.api_client() as api:
            objects: Any = client.CustomObjectsApi(api)
            while True:
                assert self._proc is not None
                code = self._proc.popen.poll()
                if code is not None:
                    raise LiqoWebhookError(f"liqo-agent webhook exited with {code}; its log ends:\n{self._proc.tail()}")
                try:
                    created = objects.create_namespaced_custom_object(
                        "networking.liqo.io",
                        "v1beta1",
                        PROBE_NAMESPACE,
                        "firewallconfigurations",
                        probe_firewall(),
                        dry_run="All",
                        _request_timeout=15,
                    )
                    rule = created["spec"]["table"]["chains"][0]["rules"]["filterRules"][0]
                    if rule.get("name"):
                        return
                    last = f"the dry-run create came back without a rule name: {rule}"
                except ApiException as err:
                    last = f"HTTP {err.status}: {(err.body or err.reason or '')[:300]!s}"
                except OSError as err:
                    last = str(err)
                if time.monotonic() > deadline:
                    raise LiqoWebhookError(
                        f"Liqo's webhook not answering after {timeout:.0f} s ({last}); "
                        f"its log ends:\n{self._proc.tail()}"
                    )
                time.sleep(POLL_S)


@contextmanager
def mutation_suspended(control_plane: ControlPlane) -> Iterator[None]:
    """Liqo's mutating webhook off for a while, put back as it was.

    For tests that stand in for a Liqo newer than the pinned one: v1.2.0's mutator re-encodes every
    object with its own Go types, dropping fields a newer CRD has (a `ctstate` match); the newer
    Liqo's webhook would know them. The validating webhook stays.
    """
    from kubernetes import client

    with control_plane.api_client() as api:
        admission: Any = client.AdmissionregistrationV1Api(api)
        saved = api.sanitize_for_serialization(admission.read_mutating_webhook_configuration(CONFIGURATION_NAME))
        admission.delete_mutating_webhook_configuration(CONFIGURATION_NAME)
        try:
            yield
        finally:
            meta = saved["metadata"]
            saved["metadata"] = {"name": meta["name"], "labels": meta.get("labels") or {}}
            admission.create_mutating_webhook_configuration(saved)
