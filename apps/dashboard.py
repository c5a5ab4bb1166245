"""Serve the weakseg dashboard (:class:`workbench.dashboard.app.Dashboard`) on this machine only::

    python apps/dashboard.py --data data/synthetic                       # fresh partial_ce model, 127.0.0.1:5006
    python apps/dashboard.py --run runs/latest [--port 5006] [--expose]  # a trained run; --expose: every interface
    panel serve apps/dashboard.py --address 127.0.0.1 --args --run runs/latest

``python apps/dashboard.py`` listens on 127.0.0.1 unless ``--expose`` is given. ``panel serve``
listens on every interface unless ``--address 127.0.0.1`` is given, though its default
websocket origin (``localhost:PORT``) already refuses sessions opened from other machines.
"""

from __future__ import annotations

import sys

import panel as pn

from workbench.dashboard.app import Dashboard
from workbench.dashboard.serve import build_parser, main, open_session

if __name__ == "__main__":
    sys.exit(main())
elif __name__.startswith("bokeh"):  # panel serve apps/dashboard.py --args ...
    _args = build_parser().parse_args(sys.argv[1:])
    _session = pn.state.as_cached(f"dashboard-session-{sorted(vars(_args).items())}", lambda: open_session(_args))
    Dashboard(_session.new_tab()).servable(title="weakseg dashboard")  # every browser tab: its own view state
