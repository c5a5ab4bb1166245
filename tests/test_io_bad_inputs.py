"""Bad inputs of workbench.io: a failed atomic write leaves nothing half-written, and the temp files of
a killed writer are cleaned up."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.io import atomic_path, remove_stale_temps, save_index_png


def test_a_failed_atomic_write_leaves_neither_file_nor_temp(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "report.json") as tmp:
        tmp.write_text('{"half": ')
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"index mask must be \(H, W\)"):
        save_index_png(tmp_path / "mask.png", np.zeros((4, 4, 3), np.uint8), [[0, 0, 0]])
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    stale = tmp_path / ".report.json.abc123.tmp"
    stale.write_bytes(b"\0" * 1000)  # a kill mid-write: nobody holds its lock any more
    other = tmp_path / ".metrics.jsonl.abc123.tmp"
    other.write_text("not ours")
    with atomic_path(tmp_path / "report.json") as tmp:
        tmp.write_text("{}")
        assert not stale.exists()
    assert other.exists(), "only the temp files of the file being written are cleaned"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.jsonl.abc123.tmp", "report.json"]


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    with atomic_path(tmp_path / "w.bin") as live:
        live.write_bytes(b"half")
        assert remove_stale_temps(tmp_path / "w.bin") == [] and live.exists()
