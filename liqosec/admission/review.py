"""Answer an AdmissionReview for a PeeringConnectivity: allowed, or refused naming every field.

The webhook refuses what the controller would report on its `Valid` condition (the same parser and
the same tenant-namespace and one-enforced-policy-per-peering rules, so the same messages), plus what only
a reading of the whole spec can tell (`checks`: rules that can never decide, selectors that can
never match). It cannot refuse what depends on the pods (a firewall past the size bound): the
controller still reports that.

Pure: what the cluster holds comes through a `Lookup`, and a lookup that fails only skips its
check, with a warning. Input is not trusted: a body that is not an AdmissionReview raises
`BadReview` (no answer can be addressed without its uid); a review whose object is missing or
malformed is refused naming the field; an unexpected failure while checking allows the object
with a warning saying so, since the controller validates it anyway and the webhook is a lint on
top of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from liqosec.admission.checks import static_problems
from liqosec.api.peeringconnectivity import GROUP, KIND, PeeringConnectivity
from liqosec.api.validation import FieldError, ValidationError, parse_peering_connectivity
from liqosec.compiler.firewallconfiguration import peer_of
from liqosec.compiler.governance import conflict, governors, is_dry_run
from liqosec.groups.view import Snapshot

REVIEW_KIND = "AdmissionReview"
REVIEW_API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
# A refusal lists this many problems, then counts the rest.
MAX_SHOWN = 20


class LookupFailed(Exception):
    """The cluster could not be read; the check that needed it is skipped."""


class Lookup(Protocol):
    def namespace(self, name: str) -> Mapping[str, Any] | None:
        """The Namespace object, None when there is none; LookupFailed when the API server cannot say."""
        ...

    def peerings(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """The PeeringConnectivities of a namespace; LookupFailed when the API server cannot say."""
        ...


class BadReview(ValueError):
    """Not an AdmissionReview this webhook can answer (answered with HTTP 400)."""


@dataclass(frozen=True)
class Verdict:
    errors: tuple[FieldError, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.errors


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def check(
    obj: Any,
    *,
    operation: str = "CREATE",
    old: Any = None,
    namespace: str = "",
    lookup: Lookup | None = None,
) -> Verdict:
    """What is wrong with a PeeringConnectivity being created or updated; nothing when it may go in."""
    if not isinstance(obj, Mapping):
        what = "missing" if obj is None else f"a {type(obj).__name__}, not an object"
        return Verdict((FieldError("request.object", f"{what}: there is no PeeringConnectivity to check"),))
    if operation == "UPDATE" and isinstance(old, Mapping) and old.get("spec") == obj.get("spec"):
        # Metadata only (the controller's finalizer, labels): never blocked, so a policy admitted
        # before the webhook existed can still be finalized and deleted.
        return Verdict()
    obj = with_namespace(obj, namespace)
    try:
        pc = parse_peering_connectivity(obj)
    except ValidationError as err:
        return Verdict(err.errors)
    errors: list[FieldError] = []
    warnings: list[str] = []
    if lookup is not None:
        errors += _cluster_problems(obj, pc, operation, lookup, warnings, old)
    errors += static_problems(pc.spec)
    return Verdict(tuple(errors), tuple(warnings))


def with_namespace(obj: Mapping[str, Any], namespace: str) -> Mapping[str, Any]:
    """The object with the request's namespace when its own metadata leaves it out."""
    if not namespace or _meta(obj).get("namespace"):
        return obj
    return {**obj, "metadata": {**_meta(obj), "namespace": namespace}}


def _cluster_problems(
    obj: Mapping[str, Any],
    pc: PeeringConnectivity,
    operation: str,
    lookup: Lookup,
    warnings: list[str],
    old: Any = None,
) -> list[FieldError]:
    """The controller's own rules that need the cluster: a tenant namespace, one enforced policy per peering."""
    namespace, name = pc.namespace, pc.name
    errors: list[FieldError] = []
    try:
        ns = lookup.namespace(namespace)
        view = Snapshot([{**ns, "kind": "Namespace"}] if ns is not None else [])
        peer_of(view, pc)
    except ValidationError as err:
        errors += err.errors
    except LookupFailed as err:
        warnings.append(f"could not read Namespace {namespace} ({err}): the controller checks it is a tenant namespace")
    if is_dry_run(obj):
        return errors  # a DryRun policy enforces nothing: any number may sit beside the enforced one
    try:
        others = [
            p
            for p in lookup.peerings(namespace)
            if _meta(p).get("name") != name and not _meta(p).get("deletionTimestamp")
        ]
    except LookupFailed as err:
        warnings.append(f"could not list the PeeringConnectivities of {namespace} ({err}): the controller checks them")
        return errors
    if operation == "CREATE" or (isinstance(old, Mapping) and is_dry_run(old)):
        # A new policy, or a staged one promoted to Enforce, comes after the enforced one, however
        # old it is: promoting it while another is enforced would leave both firewalls in force.
        governing = governors(others)
    else:
        governing = governors([*others, obj])
    problem = conflict(obj, governing)
    if problem is not None:
        errors.append(FieldError("metadata.name", problem, reason="Conflict"))
    return errors


def refusal_message(obj: Any, errors: Sequence[FieldError]) -> str:
    """`PeeringConnectivity ns/name: path: message; path: message` (the controller's wording)."""
    meta = _meta(obj) if isinstance(obj, Mapping) else {}
    name, namespace = meta.get("name"), meta.get("namespace")
    label = f"{KIND} {namespace}/{name}: " if isinstance(name, str) and isinstance(namespace, str) and name else ""
    shown = [str(e) for e in errors[:MAX_SHOWN]]
    if len(errors) > MAX_SHOWN:
        shown.append(f"... and {len(errors) - MAX_SHOWN} more")
    return label + "; ".join(shown)


def _request(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise BadReview(f"expected an {REVIEW_KIND} object, got {type(body).__name__}")
    if body.get("kind") != REVIEW_KIND or body.get("apiVersion") not in REVIEW_API_VERSIONS:
        versions = " or ".join(REVIEW_API_VERSIONS)
        raise BadReview(f"expected kind {REVIEW_KIND} of apiVersion {versions}")
    request = body.get("request")
    if not isinstance(request, Mapping):
        raise BadReview(f"{REVIEW_KIND} without a request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid: missing: the answer could not be matched to the request")
    return request


def _is_ours(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind")
    return isinstance(kind, Mapping) and kind.get("group") == GROUP and kind.get("kind") == KIND


def review(body: Any, lookup: Lookup | None = None) -> dict[str, Any]:
    """The AdmissionReview answering `body` (raises BadReview when `body` is not one)."""
    request = _request(body)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    operation = request.get("operation")
    obj = request.get("object")
    if operation not in ("CREATE", "UPDATE"):
        pass  # only CREATE and UPDATE are registered; anything else is not ours to judge
    elif not _is_ours(request):
        response["warnings"] = [
            f"liqosec's webhook checks {KIND} objects only; this {request.get('kind')} was not checked"
        ]
    else:
        namespace = request.get("namespace")
        if isinstance(obj, Mapping) and isinstance(namespace, str):
            obj = with_namespace(obj, namespace)
        try:
            verdict = check(obj, operation=str(operation), old=request.get("oldObject"), lookup=lookup)
        except Exception as err:  # a bug here must not block writes the controller validates anyway
            detail = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            verdict = Verdict(
                warnings=(
                    f"liqosec's webhook could not check this object ({detail}); the controller still validates it",
                )
            )
        if not verdict.allowed:
            response["allowed"] = False
            response["status"] = {
                "code": 422,
                "reason": "Invalid",
                "message": refusal_message(obj, verdict.errors),
                "details": {
                    "causes": [
                        {"field": e.path, "message": e.message, "reason": e.reason} for e in verdict.errors[:MAX_SHOWN]
                    ]
                },
            }
        if verdict.warnings:
            response["warnings"] = list(verdict.warnings)
    return {"apiVersion": body["apiVersion"], "kind": REVIEW_KIND, "response": response}
