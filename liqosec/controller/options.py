"""`liqosec run`: flags (with environment fallbacks) and the process around the controller."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
from typing import Any

import structlog

EXIT_LOST_LEADERSHIP = 1


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def add_run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run the controller against a cluster")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig path (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument("--workers", type=int, default=int(_env("LIQOSEC_WORKERS", "2")), help="concurrent reconciles")
    p.add_argument("--resync", type=float, default=600.0, help="seconds between full re-checks of every peering (0: never)")
    p.add_argument("--batch-window", type=float, default=0.5, help="seconds pod and endpoint changes wait to coalesce")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True, help="elect a leader on a Lease")
    p.add_argument("--leader-election-namespace", default=_env("POD_NAMESPACE", "liqo"))
    p.add_argument("--leader-election-id", default="liqosec", help="name of the Lease")
    p.add_argument("--identity", default=_env("POD_NAME", socket.gethostname()), help="this instance's name in the Lease")
    p.add_argument("--metrics-bind-address", default=":8080", help="host:port for /metrics ('0' disables)")
    p.add_argument("--health-probe-bind-address", default=":8081", help="host:port for /healthz and /readyz ('0' disables)")
    p.add_argument("--log-level", default=_env("LIQOSEC_LOG_LEVEL", "info"), choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-format", default=_env("LIQOSEC_LOG_FORMAT", "auto"), choices=("auto", "json", "console"))
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace, out: Any = None) -> int:
    from liqosec.controller import health
    from liqosec.controller.logging import configure
    from liqosec.controller.manager import Controller, Exit, Options
    from liqosec.kube.client import RestKubeClient, load_api_client

    configure(level=args.log_level, fmt=args.log_format)
    log = structlog.get_logger("liqosec")
    options = Options(
        identity=args.identity,
        workers=args.workers,
        resync_seconds=args.resync,
        batch_seconds=args.batch_window,
        leader_elect=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_id=args.leader_election_id,
    )
    controller = Controller(RestKubeClient(load_api_client(args.kubeconfig, args.context)), options)
    servers = []
    if args.metrics_bind_address != "0":
        servers.append(health.serve(args.metrics_bind_address, registry=controller.registry))
    if args.health_probe_bind_address != "0":
        servers.append(health.serve(args.health_probe_bind_address, healthy=lambda: True, ready=controller.synced))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("starting", identity=options.identity, workers=options.workers, leader_elect=options.leader_elect)
    result = controller.run(stop)
    for server in servers:
        server.shutdown()
    log.info("stopped", reason=result.value)
    return EXIT_LOST_LEADERSHIP if result is Exit.LOST else 0
