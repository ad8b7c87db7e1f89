"""``python -m harness up [--crds DIR ...]``: a local control plane for demos and debugging.

Prints the kubeconfig path on stdout (the only line on stdout, so ``KUBECONFIG=$(...)`` style
scripting works with a fifo or a file), logs go to stderr, and the control plane runs until
SIGINT or SIGTERM, then stops cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from harness.controlplane import ControlPlane, ControlPlaneError, find_binaries

REPO_ROOT = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd, kube-apiserver and kube-controller-manager")
    up.add_argument(
        "--crds", type=Path, action="append", default=[], help="CRD YAML file or directory to install (repeatable)"
    )
    up.add_argument(
        "--work-dir", type=Path, default=None, help="keep state and logs here instead of a temp dir removed on exit"
    )
    demo = sub.add_parser("demo", help="run the controller on a local API server with demo peerings")
    demo.add_argument("--once", action="store_true", help="exit after printing the converged state")
    demo.add_argument("--metrics-bind-address", default="127.0.0.1:8080")
    demo.add_argument("--health-probe-bind-address", default="127.0.0.1:8081")
    return parser


def up(crds: list[Path], work_dir: Path | None) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cp = ControlPlane(find_binaries(REPO_ROOT), work_dir=work_dir)
        with cp:
            cp.install_crds(crds)
            print(cp.kubeconfig_path, flush=True)
            logging.getLogger(__name__).info(
                "control plane up; Ctrl-C to stop", extra={"server": cp.server, "kubeconfig": str(cp.kubeconfig_path)}
            )
            while not stop.wait(1.0):
                pass
    except ControlPlaneError as err:
        logging.getLogger(__name__).error("control plane failed: %s", err)
        return 1
    return 0


_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _KeyValueFormatter(logging.Formatter):
    """Show the ``extra=`` keys the library logs with, so the data is not lost on a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        return f"{line} {pairs}" if pairs else line


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from harness.demo import demo
        from liqosec.controller.logging import configure

        configure(level="warning", fmt="console")
        return demo(
            out=sys.stdout,
            once=args.once,
            metrics_address=args.metrics_bind_address,
            probe_address=args.health_probe_bind_address,
        )
    return up(args.crds, args.work_dir)


if __name__ == "__main__":
    sys.exit(main())
