"""`liqosec run`: flags (with environment fallbacks) and the process around the controller."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import structlog

from liqosec.kube.heap import PERIOD_SECONDS, FullCollections

# Spelled here so `liqosec --help` needs no compiler import; checked against the compiler's by a test.
ALL_NODES, PER_NODE = "all-nodes", "per-node"

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from liqosec.controller.manager import Controller, Options
    from liqosec.kube.client import KubeClient, RestKubeClient

EXIT_LOST_LEADERSHIP = 1
WEBHOOK_CERT_DIR = "/tmp/k8s-webhook-server/serving-certs"  # where controller-runtime looks too
EXIT_STARTUP = 1


# glibc's malloc, set for a long-running threaded Python process (issue 17, memory per cached pod):
# - a fixed mmap threshold: by default glibc raises it to the size of every mmapped block freed (up
#   to 32 MiB), so once the first LIST page's text (~1 MB) is freed, later pages and firewall bodies
#   come from the heap and stay resident after they are freed;
# - two arenas: one per thread (up to 8 a core) buys nothing under the GIL and keeps each thread's
#   freed blocks apart.
# Together ~1 MB less RSS at 1,000 pods. An operator's MALLOC_MMAP_THRESHOLD_ / MALLOC_ARENA_MAX wins.
MALLOC_MMAP_THRESHOLD = 128 * 1024
MALLOC_ARENAS = 2
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # mallopt parameters, <malloc.h>


def tune_allocator(environ: dict[str, str] | None = None) -> list[str]:
    """Set glibc's malloc for this process, before any thread starts; what was set (nothing elsewhere)."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return []
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; musl has none
    except (OSError, AttributeError):
        return []
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = []
    for variable, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD),
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, MALLOC_ARENAS),
    ):
        if variable not in env and mallopt(param, value) == 1:
            done.append(variable)
    return done


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def add_run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run the controller against a cluster")
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig path (default: in-cluster, then ~/.kube/config)",
    )
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument(
        "--workers",
        type=int,
        default=int(_env("LIQOSEC_WORKERS", "4")),
        help="concurrent reconciles (they mostly wait on the API server)",
    )
    p.add_argument(
        "--resync", type=float, default=600.0, help="seconds between full re-checks of every peering (0: never)"
    )
    p.add_argument(
        "--batch-window",
        type=parse_batch_window,
        default=None,
        metavar="auto|SECONDS",
        help="how pod, endpoint and firewall changes coalesce, per peering: a change is reconciled at once "
        "unless the peering is being reconciled or four or more changes came within 0.2 s (a burst); then it "
        "is held until 0.2 s pass without a change, or the window passes, so a burst costs a write at its "
        "start, one per window and one at its end, and no change waits longer than the window. "
        "auto (default): 5 s; SECONDS: that window; 0: no holding",
    )
    p.add_argument(
        "--firewall-scope",
        choices=(ALL_NODES, PER_NODE),
        default=_env("LIQOSEC_FIREWALL_SCOPE", ALL_NODES),
        help="all-nodes (default): one firewall (sharded) every node applies; per-node: one firewall per node "
        "with only the packets that have an end on that node, so a pod change rewrites its node's only",
    )
    p.add_argument(
        "--retire-grace",
        type=float,
        default=10.0,
        help="seconds an emptied FirewallConfiguration stays before its deletion, so every node's Liqo "
        "agent applies the empty table first (Liqo's agents share one finalizer)",
    )
    p.add_argument(
        "--full-gc-period",
        type=float,
        default=PERIOD_SECONDS,
        help="seconds between two of Python's full garbage collections, which walk every cached object "
        "(0.1 s at 10,000 pods) and would otherwise run every few seconds under churn; 0 leaves Python's "
        "collector as it is",
    )
    p.add_argument(
        "--leader-elect", action=argparse.BooleanOptionalAction, default=True, help="elect a leader on a Lease"
    )
    p.add_argument("--leader-election-namespace", default=_env("POD_NAMESPACE", "liqo"))
    p.add_argument("--leader-election-id", default="liqosec", help="name of the Lease")
    p.add_argument(
        "--identity", default=_env("POD_NAME", socket.gethostname()), help="this instance's name in the Lease"
    )
    p.add_argument("--metrics-bind-address", default=":8080", help="host:port for /metrics ('0' disables)")
    p.add_argument(
        "--health-probe-bind-address", default=":8081", help="host:port for /healthz and /readyz ('0' disables)"
    )
    p.add_argument(
        "--log-level", default=_env("LIQOSEC_LOG_LEVEL", "info"), choices=("debug", "info", "warning", "error")
    )
    p.add_argument("--log-format", default=_env("LIQOSEC_LOG_FORMAT", "auto"), choices=("auto", "json", "console"))
    p.add_argument(
        "--webhook-bind-address",
        default="0",
        help="host:port for the validating admission webhook (POST /validate, GET /healthz, HTTPS; "
        "'0', the default, disables it); see README, \"Admission\"",
    )
    p.add_argument(
        "--webhook-cert-dir",
        default=WEBHOOK_CERT_DIR,
        help="directory holding the webhook's serving certificate, tls.crt and tls.key (reloaded when they change)",
    )
    p.set_defaults(func=run_command)


def parse_batch_window(value: str) -> float | None:
    """`--batch-window`: `auto` (None) or seconds >= 0."""
    if value.strip().lower() == "auto":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or seconds, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"batch window must be auto or >= 0 seconds, got {value!r}")
    return seconds


def run_command(args: argparse.Namespace, out: Any = None) -> int:
    """Run the controller until SIGTERM (exit 0) or a lost lease (exit 1).

    Start-up failures a user must fix (a flag out of range, no usable
    kubeconfig, a port taken, the API server unreachable or refusing us) print
    one line to stderr saying what to do, with no traceback, and exit 1: in a
    pod the restart backoff retries. Missing CRDs are not such a failure: the
    controller stays up, not ready, saying on /readyz, in its log and in an
    Event on its Pod which CRDs to install, and starts once they are (see
    `manager`). Exiting would only crash-loop until someone installs them.
    """
    try:
        return _run(args)
    except StartupError as err:
        print(f"liqosec run: {err}", file=sys.stderr)
        return EXIT_STARTUP


class StartupError(Exception):
    """What keeps `liqosec run` from starting, worded as what to do about it."""


def _one_line(text: object, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _run(args: argparse.Namespace) -> int:
    from liqosec.controller.logging import configure
    from liqosec.controller.manager import Controller, Exit

    tune_allocator()
    configure(level=args.log_level, fmt=args.log_format)
    log = structlog.get_logger("liqosec")
    options = options_from_args(args)
    if not 0 <= args.full_gc_period < float("inf"):  # NaN fails this too
        raise StartupError(f"--full-gc-period must be a number of seconds >= 0, not {args.full_gc_period}")
    client, server = connect(args.kubeconfig, args.context)
    controller = Controller(client, options)
    servers = _listen(args, controller)
    servers += _listen_webhook(args, client, servers)
    try:
        _preflight(client, server)
    except StartupError:
        for running in servers:
            running.shutdown()
            running.server_close()
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "starting", identity=options.identity, workers=options.workers, leader_elect=options.leader_elect, server=server
    )
    if args.full_gc_period > 0:
        collections = FullCollections(period=args.full_gc_period)
        threading.Thread(
            target=collections.run,
            args=(stop, lambda done: log.debug("full garbage collection", **asdict(done))),
            name="gc",
            daemon=True,
        ).start()
    result = controller.run(stop)
    for running in servers:
        running.shutdown()
    log.info("stopped", reason=result.value)
    return EXIT_LOST_LEADERSHIP if result is Exit.LOST else 0


def options_from_args(args: argparse.Namespace) -> Options:
    """The controller's options from parsed flags; `StartupError` for a value out of range."""
    from liqosec.controller.manager import Options

    pod_namespace, pod_name = os.environ.get("POD_NAMESPACE"), os.environ.get("POD_NAME")
    try:
        return Options(
            identity=args.identity,
            workers=args.workers,
            resync_seconds=args.resync,
            batch_seconds=args.batch_window,
            retire_grace_seconds=args.retire_grace,
            firewall_scope=args.firewall_scope,
            leader_elect=args.leader_elect,
            leader_election_namespace=args.leader_election_namespace,
            leader_election_id=args.leader_election_id,
            pod=(pod_namespace, pod_name) if pod_namespace and pod_name else None,
        )
    except ValueError as err:
        raise StartupError(f"{err}: see liqosec run --help") from None


def connect(kubeconfig: str | None, context: str | None) -> tuple[RestKubeClient, str]:
    """A client from the kubeconfig (or the pod's ServiceAccount), and the server it talks to."""
    from liqosec.kube.client import RestKubeClient, load_api_client

    in_cluster = kubeconfig is None and context is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if in_cluster:
        where = "the in-cluster configuration (ServiceAccount token)"
        fix = "check the pod's ServiceAccount token mount, or pass --kubeconfig"
    else:
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        _check_readable(path)
        where = f"kubeconfig {path}"
        fix = "fix it or pass another with --kubeconfig" + ("" if context is None else " or --context")
    try:
        api = load_api_client(kubeconfig, context)
    except Exception as err:  # the kubernetes loader raises many kinds; each is a bad config
        raise StartupError(f"{where} is not usable ({_one_line(err)}): {fix}") from None
    return RestKubeClient(api), str(getattr(api.configuration, "host", "") or "?")


def _check_readable(path: str) -> None:
    files = [p for p in path.split(os.pathsep) if p]
    if not any(os.path.exists(p) for p in files):
        raise StartupError(
            f"kubeconfig {path} does not exist: pass --kubeconfig (or set KUBECONFIG) to a kubeconfig file, "
            "or run in a pod with a ServiceAccount"
        )
    for p in files:
        if os.path.isdir(p):
            raise StartupError(f"kubeconfig {p} is a directory: pass --kubeconfig a kubeconfig file")
        try:
            with open(p, "rb"):
                pass
        except FileNotFoundError:
            continue  # KUBECONFIG may list files that do not exist; kubectl skips them too
        except OSError as err:
            raise StartupError(
                f"cannot read kubeconfig {p} ({err.strerror}): fix its permissions or pass another with --kubeconfig"
            ) from None


def _listen(args: argparse.Namespace, controller: Controller) -> list[ThreadingHTTPServer]:
    from liqosec.controller import health

    wanted: list[tuple[str, str, str, dict[str, Any]]] = []
    if args.metrics_bind_address != "0":
        wanted.append(
            (args.metrics_bind_address, "metrics", "--metrics-bind-address", {"registry": controller.registry})
        )
    if args.health_probe_bind_address != "0":
        wanted.append(
            (
                args.health_probe_bind_address,
                "health probes",
                "--health-probe-bind-address",
                {"healthy": lambda: True, "ready": controller.synced, "not_ready": controller.not_ready_reason},
            )
        )
    servers: list[ThreadingHTTPServer] = []
    for address, what, flag, handlers in wanted:
        try:
            servers.append(health.serve(address, **handlers))
        except (OSError, ValueError) as err:
            for running in servers:
                running.shutdown()
                running.server_close()
            reason = err.strerror if isinstance(err, OSError) and err.strerror else _one_line(err)
            raise StartupError(
                f"cannot listen on {address} for {what} ({reason}): free the port or choose another with "
                f"{flag} ('0' disables it)"
            ) from None
    return servers


def _listen_webhook(
    args: argparse.Namespace, client: KubeClient, started: list[ThreadingHTTPServer]
) -> list[ThreadingHTTPServer]:
    """The admission webhook, when asked for; its lookups use the controller's client."""
    if getattr(args, "webhook_bind_address", "0") == "0":
        return []
    from liqosec.admission.server import ClusterLookup, serve

    try:
        return [serve(args.webhook_bind_address, args.webhook_cert_dir, ClusterLookup(client))]
    except (OSError, ValueError) as err:
        for running in started:
            running.shutdown()
            running.server_close()
        reason = err.strerror if isinstance(err, OSError) and err.strerror else _one_line(err)
        raise StartupError(
            f"cannot serve the webhook on {args.webhook_bind_address} ({reason}): check --webhook-bind-address "
            "and the tls.crt and tls.key in --webhook-cert-dir ('0' disables the webhook)"
        ) from None


def _preflight(client: KubeClient, server: str) -> None:
    """One cheap call the controller needs anyway (CRDs are read at start): is the API server there, and us allowed?"""
    from liqosec.controller.resources import CRDS
    from liqosec.kube import errors

    try:
        client.list(CRDS, limit=1, continue_token=None)
    except errors.ConnectionFailure as err:
        raise StartupError(
            f"cannot reach the API server at {server} ({_one_line(err.message)}): check that it is up and that "
            "--kubeconfig/--context point at it"
        ) from None
    except errors.Unauthorized:
        raise StartupError(
            f"the API server at {server} refused the credentials (401 Unauthorized): renew them in the kubeconfig, "
            "or check the pod's ServiceAccount token"
        ) from None
    except errors.Forbidden:
        raise StartupError(
            f"the API server at {server} forbids listing CustomResourceDefinitions (403 Forbidden): bind liqosec's "
            "ClusterRole (manifests/rbac.yaml, or the Helm chart) to this identity"
        ) from None
    except errors.ApiError as err:
        raise StartupError(f"the API server at {server} failed ({_one_line(err)}): retry once it is healthy") from None
