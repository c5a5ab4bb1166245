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


def test_a_refused_start_up_leaves_no_store_in_the_dataset_folder(dataset, capsys):
    """Issue 25: a refused start-up left annotations.sqlite in the dataset folder (bad split, busy port)."""
    import socket

    import workbench.dashboard.serve as app

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        for argv in (
            ["--data", str(dataset), "--split", "bogus"],
            ["--data", str(dataset), "--port", str(busy.getsockname()[1])],
        ):
            assert app.main(argv) == 2, argv
            assert capsys.readouterr().err.startswith("dashboard: error: ")
            assert not list(dataset.glob("annotations.sqlite*")), argv
    finally:
        busy.close()


def test_a_store_that_was_there_stays_after_a_refused_start_up(dataset, synthetic_root, capsys):
    import workbench.dashboard.serve as app
    from workbench.annotations.store import AnnotationStore
    from workbench.data.folder import load_dataset_info
    from workbench.labels.weak_labels import Point

    info = load_dataset_info(dataset)
    with AnnotationStore(dataset / "annotations.sqlite", info.classes) as store:
        store.add("train_0000", Point(1, 1, 0), (32, 32))
    assert app.main(["--data", str(dataset), "--port", "99999"]) == 2
    with AnnotationStore(dataset / "annotations.sqlite", info.classes) as store:
        assert store.images() == ["train_0000"]
