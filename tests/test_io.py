"""workbench/io.py: the file lock that lets two bench processes fill one results file, and atomic writes."""

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


def test_atomic_writes_and_generated_datasets_get_the_umask_modes_not_0600(tmp_path):
    """Issue 25: every atomically written file was 0600 and every generated dataset 0700, whatever the umask."""
    import os
    import stat

    from workbench.data.synthetic import SyntheticConfig, generate
    from workbench.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.json", "{}")
        assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644
        data = generate(tmp_path / "synthetic", SyntheticConfig(height=16, width=16, train=2, val=1))
        assert stat.S_IMODE(data.stat().st_mode) == 0o755
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "{}")
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)
