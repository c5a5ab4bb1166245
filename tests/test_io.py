"""workbench/io.py: the file lock that lets two bench processes fill one results file."""

from __future__ import annotations

import threading
import time

from workbench.io import file_lock


def test_a_second_holder_waits_until_the_first_lets_go(tmp_path):
    target, order = tmp_path / "table.json", []

    def second():
        with file_lock(target):
            order.append("second")

    with file_lock(target):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)  # long enough for an unlocked second holder to get in first
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"] and (tmp_path / "table.lock").exists()
