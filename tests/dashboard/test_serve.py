"""Serving the dashboard: local only unless exposed, and every start-up error in one line."""

from __future__ import annotations

import pytest


def test_served_on_localhost_unless_exposed(monkeypatch, synthetic_root, tmp_path):
    pytest.importorskip("workbench.dashboard.security")
    import workbench.dashboard.serve as app

    calls = []

    class Server:
        io_loop = type("Loop", (), {"start": lambda self: None})()

        def start(self):
            pass

    monkeypatch.setattr(app.pn, "serve", lambda *args, **kwargs: calls.append(kwargs) or Server())
    base = ["--data", str(synthetic_root), "--store", str(tmp_path / "s.sqlite"), "--port", "5999"]
    assert app.main(base) == 0 and app.main([*base, "--expose"]) == 0
    assert [c["address"] for c in calls] == ["127.0.0.1", "0.0.0.0"]
    assert calls[0]["websocket_origin"] == ["localhost:5999", "127.0.0.1:5999"]


def test_every_start_up_error_is_one_line(synthetic_root, tmp_path, capsys):
    """Missing data or run, bad split or method, a garbage store, a store of other classes, a busy or impossible port."""
    import socket

    import workbench.dashboard.serve as app
    from workbench.annotations.store import AnnotationStore

    (tmp_path / "garbage.sqlite").write_bytes(b"this is not sqlite" * 100)
    AnnotationStore(tmp_path / "other.sqlite", ["a", "b"]).close()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    data = ["--data", str(synthetic_root), "--store", str(tmp_path / "s.sqlite")]
    cases = {
        "missing data": (["--data", str(tmp_path / "nope")], "nope"),
        "missing run": (["--run", str(tmp_path / "no-run")], "no-run"),
        "bad split": ([*data, "--split", "bogus"], "bogus"),
        "bad method": ([*data, "--method", "bogus"], "unknown method"),
        "garbage store": (["--data", str(synthetic_root), "--store", str(tmp_path / "garbage.sqlite")], "store"),
        "store classes differ": (["--data", str(synthetic_root), "--store", str(tmp_path / "other.sqlite")], "differ"),
        "busy port": ([*data, "--port", str(busy.getsockname()[1])], "in use"),
        "port 99999": ([*data, "--port", "99999"], "not a TCP port"),
    }
    try:
        for case, (argv, words) in cases.items():
            assert app.main(argv) == 2, case
            err = capsys.readouterr().err
            assert err.startswith("dashboard: error: ") and err.count("\n") == 1, (case, err)
            assert "Traceback" not in err and words in err, (case, err)
    finally:
        busy.close()
