"""bench/gpu_run.sh, dry-run on CPU at a tiny size: the same stages and code path a lent GPU runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_run.sh"


def test_the_gpu_script_runs_every_stage_on_cpu_and_writes_its_results(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "DEVICE": "cpu", "OUT": str(tmp_path), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    stages = (tmp_path / "gpu_run" / "stages.txt").read_text()
    assert done.returncode == 0, stages + done.stderr[-2000:]
    names = [line.split()[0] for line in stages.splitlines() if " rc=" in line]
    assert {"tests", "loop_speed", "loader_speed", "weak_shot"} <= set(names)
    assert len([n for n in names if n.startswith("label_efficiency_")]) == 4
    assert all(" rc=0 " in line for line in stages.splitlines() if " rc=" in line), stages
    assert (tmp_path / "label_efficiency_camvid_pretrained_cuda.json").is_file()  # the _cuda tag of the GPU tables
    assert "device cpu" in stages
