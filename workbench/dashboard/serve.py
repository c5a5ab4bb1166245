"""Serving the dashboard from the command line: arguments, the session, the Bokeh server, one-line start-up errors.

``apps/dashboard.py`` is the script users run (``python apps/dashboard.py``, ``panel serve apps/dashboard.py``).
"""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import sys
import traceback

import panel as pn

from workbench.annotations.store import remove_store
from workbench.dashboard.app import Dashboard
from workbench.dashboard.retrainer import leave_a_core
from workbench.dashboard.security import bind_address
from workbench.dashboard.session import DashboardSession
from workbench.dashboard.workspace import SessionError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apps/dashboard.py", description="Serve the weakseg dashboard on this machine only."
    )
    parser.add_argument("--data", help="dataset folder (default: the run's dataset, else the synthetic set)")
    parser.add_argument("--run", help="run directory whose model to load (default: a fresh model)")
    parser.add_argument("--method", default="partial_ce", help="method of a fresh model")
    parser.add_argument("--store", help="annotation store (default: annotations.sqlite in the run or data folder)")
    parser.add_argument("--split", default="train", help="split to browse and annotate")
    parser.add_argument("--out", help="where exports and full retrains go (default: <run>/dashboard or runs/dashboard)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores but one)")
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--expose", action="store_true", help="listen on every interface, not only 127.0.0.1")
    parser.add_argument("--show", action="store_true", help="open a browser tab")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of a start-up error")
    return parser


def open_session(args: argparse.Namespace) -> DashboardSession:
    leave_a_core(args.threads)
    return DashboardSession.open(
        data=args.data, run=args.run, method=args.method, store=args.store, split=args.split,
        device=args.device, out=args.out,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Serve the dashboard; a bad argument, dataset, run, store or port is one line on stderr and exit 2
    (``--debug`` or ``WORKBENCH_DEBUG=1`` for the traceback)."""
    args = build_parser().parse_args(argv)
    try:
        check_port(args.port)
        session = open_session(args)
    except STARTUP_ERRORS as err:
        return _startup_failed(err, args)
    address = bind_address(args.expose)
    origins = ["*"] if args.expose else [f"localhost:{args.port}", f"127.0.0.1:{args.port}"]
    try:
        server = pn.serve(
            lambda: Dashboard(session.new_tab()), port=args.port, address=address, websocket_origin=origins, show=args.show,
            title="weakseg dashboard", start=False,
        )  # fmt: skip
    except STARTUP_ERRORS as err:
        session.close()
        if session.created_store:  # this start-up made it, empty: a refused start-up leaves nothing behind
            remove_store(session.workspace.store.path)
        return _startup_failed(err, args)
    print(f"dashboard on http://{address}:{args.port} ({'exposed' if args.expose else 'local only'})")
    server.start()
    server.io_loop.start()
    return 0


STARTUP_ERRORS = (ValueError, OSError, sqlite3.DatabaseError, OverflowError)


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise SessionError(f"--port {port} is not a TCP port; pick one in 1..65535 (e.g. 5006)")


def _startup_failed(err: BaseException, args: argparse.Namespace) -> int:
    if args.debug or os.environ.get("WORKBENCH_DEBUG"):
        traceback.print_exception(err)
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, OSError) and err.errno == errno.EADDRINUSE:
        message = f"port {args.port} is in use by another program; pick another with --port"
    elif isinstance(err, sqlite3.DatabaseError):
        message = f"the annotation store is not a workbench store ({err}); point --store at another file"
    print(f"dashboard: error: {message}", file=sys.stderr)
    return 2
