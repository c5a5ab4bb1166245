"""kill -9 tests: the annotation store keeps every acknowledged edit; training resumes to the same weights.

Both kill real writing processes with SIGKILL, so they are marked slow. The store's writers are
forked from one spawned server that imports the workbench once, so fifty kills take seconds of
writing rather than fifty interpreter start-ups.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from workbench.annotations.store import AnnotationStore
from workbench.methods import METHODS
from workbench.train.checkpoint import read_jsonl

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("a", "b", "c")
SIZE = (24, 24)
N_IMAGES = 6
KILLS = 50
KILL_WHILE_OPENING = 0.2  # share of kills timed from the start rather than from the first edit


def _digest(store, image):
    """Everything a user sees of one image (item ids, items, tags), hashed."""
    items = sorted(store.items(image).items())
    tags = sorted(store.weak_labels(image).tags) if items or image in store.images() else []
    return hashlib.sha1(repr((items, tags)).encode()).hexdigest()[:16]


WRITER = (
    "import hashlib, os, random, sys, traceback\n"
    "from workbench.annotations.store import AnnotationStore\n"
    "from workbench.labels.weak_labels import Box, Point, Scribble\n"
    + inspect.getsource(_digest)
    + f"CLASSES, SIZE, N_IMAGES = {CLASSES!r}, {SIZE!r}, {N_IMAGES}\n"
    + """
path = sys.argv[1]


def item(rng):
    r, c, k = rng.uniform(0, SIZE[0] - 1), rng.uniform(0, SIZE[1] - 1), rng.randrange(len(CLASSES))
    kind = rng.random()
    if kind < 0.5:
        return Point(r, c, k, rng.choice([0.0, 2.0]))
    if kind < 0.8:
        path = tuple((rng.uniform(0, SIZE[0]), rng.uniform(0, SIZE[1])) for _ in range(rng.randrange(2, 6)))
        return Scribble(path, k, rng.uniform(1, 5))
    return Box(r / 2, c / 2, r / 2 + 3, c / 2 + 3, k)


def burst(rng):
    \"\"\"Edit until killed; print each edit once it is committed.\"\"\"
    store = AnnotationStore(path, CLASSES)
    while True:
        image = f"im{rng.randrange(N_IMAGES)}"
        ids = list(store.items(image))
        last = max([h["id"] for h in store.history(image)], default=0)
        u = rng.random()
        if u < 0.4 or not ids:
            store.add(image, item(rng), SIZE)
        elif u < 0.55:
            store.replace(image, rng.choice(ids), item(rng))
        elif u < 0.65:
            store.remove(image, rng.choice(ids))
        elif u < 0.72:
            store.set_tags(image, rng.sample(range(len(CLASSES)), rng.randrange(3)), SIZE)
        elif u < 0.88:
            store.undo(image)
        else:
            store.redo(image)
        new = max([h["id"] for h in store.history(image)], default=0)
        ack = f"{image} {new if new > last else 0} {_digest(store, image)}\\n"
        os.write(1, ack.encode())  # acknowledged: committed; one write, so a kill never leaves half a line


for command in sys.stdin:  # "go SEED": fork one writer, report its pid, wait for its death
    pid = os.fork()
    if pid == 0:
        try:
            burst(random.Random(int(command.split()[1])))
        except BaseException:
            traceback.print_exc()
        os._exit(1)
    print("pid", pid, file=sys.stderr, flush=True)
    _, status = os.waitpid(pid, 0)
    print("end", os.waitstatus_to_exitcode(status), flush=True)
"""
)


def _pump(server: subprocess.Popen, lines: list[str], first_ack: threading.Event) -> int:
    """Collect one writer's acknowledgements up to the server's "end"; return the writer's exit code."""
    for line in server.stdout:
        if line.startswith("end "):
            return int(line.split()[1])
        lines.append(line)
        first_ack.set()
    raise AssertionError("the writer server died")


def _burst_until_killed(server, pool, reader, rng) -> list[str]:
    """Fork one writer, let it edit, SIGKILL it at a random moment; return its acknowledgement lines."""
    server.stdin.write(f"go {rng.randrange(2**31)}\n")
    server.stdin.flush()
    started = server.stderr.readline()
    assert started.startswith("pid "), f"the writer server failed: {started}"
    lines: list[str] = []
    first_ack = threading.Event()
    exit_code = pool.submit(_pump, server, lines, first_ack)
    if rng.random() < KILL_WHILE_OPENING:  # may hit the store's creation and migration
        deadline = time.monotonic() + rng.uniform(0.0, 0.05)
    else:  # mid-burst, however slowly a loaded machine runs the writer
        first_ack.wait(timeout=60)
        deadline = time.monotonic() + rng.uniform(0.0, 0.3)
    while time.monotonic() < deadline:
        reader.to_weak_label_set()
    os.kill(int(started.split()[1]), signal.SIGKILL)
    assert exit_code.result(timeout=60) == -signal.SIGKILL, "the writer died before it was killed"
    return lines


def _spawn_server(path: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip


def _replayed_state(db: sqlite3.Connection, image: str) -> tuple[dict, list]:
    """Items and tags rebuilt from the edits that are done, oldest first; each edit's 'before' must match."""
    items, tags = {}, []
    for (changes,) in db.execute("SELECT changes FROM edits WHERE image = ? AND state = 'done' ORDER BY id", (image,)):
        changes = json.loads(changes)
        for item_id, before, after in changes["items"]:
            assert items.get(item_id) == before, f"edit history of {image} does not chain at item {item_id}"
            items[item_id] = after
        if changes["tags"] is not None:
            assert tags == changes["tags"][0]
            tags = changes["tags"][1]
    return {k: v for k, v in items.items() if v is not None}, tags


@pytest.mark.slow
def test_store_keeps_every_acknowledged_edit_through_50_kills(tmp_path):
    path = tmp_path / "annotations.sqlite"
    rng = random.Random(0)
    server = _spawn_server(path)
    pool = ThreadPoolExecutor(1)  # reads the writer's acknowledgements
    reader = AnnotationStore(path, CLASSES)  # reads during every burst, as a training thread would
    acked_edits, acked_ops, torn_rounds = {}, 0, 0
    try:
        for kill in range(KILLS):
            lines = _burst_until_killed(server, pool, reader, rng)
            last_seen = {}
            for line in lines:
                image, edit_id, digest = line.split()
                acked_ops += 1
                last_seen[image] = digest
                if int(edit_id):
                    acked_edits[int(edit_id)] = image
            # The writer may have committed one more edit after its last acknowledgement, never fewer.
            changed = [image for image, digest in last_seen.items() if _digest(reader, image) != digest]
            assert len(changed) <= 1, f"kill {kill}: acknowledged state lost for {changed}"
            torn_rounds += bool(changed)
        server.stdin.close()
        assert server.wait(timeout=60) == 0
    finally:
        reader.close()
        server.kill()  # ends a pump still waiting for the server, whatever failed
        pool.shutdown(wait=False)

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    stored = dict(db.execute("SELECT id, image FROM edits"))
    missing = {e: im for e, im in acked_edits.items() if stored.get(e) != im}
    assert not missing, f"acknowledged edits lost: {sorted(missing)[:10]}"
    for (image,) in db.execute("SELECT name FROM images"):
        items, tags = _replayed_state(db, image)
        current = dict(db.execute("SELECT id, data FROM items WHERE image = ? AND data IS NOT NULL", (image,)))
        assert current == items
        assert json.loads(db.execute("SELECT tags FROM images WHERE name = ?", (image,)).fetchone()[0]) == tags
    db.close()
    assert acked_ops > KILLS, "the writers hardly wrote anything before being killed"
    print(
        f"\n{KILLS} kills survived; {acked_ops} acknowledged operations checked "
        f"({len(acked_edits)} edit rows by id, the rest by state); {torn_rounds} kills landed after an "
        "unacknowledged commit"
    )


# ----------------------------------------------------------------------------- training resume


def _train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "workbench", "train", "--method", "partial_ce", "--data", str(data), "--out", str(out),
        "--epochs", "3", "--batch_size=4", "--seed=3", "--log_every=1", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_training_resumed_after_kill_matches_an_uninterrupted_run(tmp_path, synthetic_root):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "env": env, "cwd": REPO}
    reference = subprocess.Popen(_train_command(synthetic_root, ref_dir), **quiet)
    victim = subprocess.Popen(_train_command(synthetic_root, run_dir), **quiet)
    state_file = run_dir / "checkpoint" / "train_state.pt"
    while not state_file.exists() and victim.poll() is None:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (run_dir / "report.json").exists()
    killed_at = torch.load(state_file, weights_only=True)["epoch"]

    resumed = subprocess.run(_train_command(synthetic_root, run_dir, "--resume"), **quiet)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert reference.wait() == 0, reference.stderr.read().decode()

    ref, got = load_file(ref_dir / "checkpoint/model.safetensors"), load_file(run_dir / "checkpoint/model.safetensors")
    assert ref.keys() == got.keys()
    max_diff = max((ref[k].double() - got[k].double()).abs().max().item() for k in ref)
    ref_miou = json.loads((ref_dir / "report.json").read_text())["miou"]
    got_miou = json.loads((run_dir / "report.json").read_text())["miou"]
    print(f"\nkilled after epoch {killed_at} of 3; max |weight diff| {max_diff:.3g}; mIoU {got_miou} vs {ref_miou}")
    assert max_diff <= 1e-6
    assert abs(got_miou - ref_miou) <= 1e-6
    assert _losses(run_dir) == _losses(ref_dir)


class _Killed(BaseException):
    """Stands in for SIGKILL at one exact instant, which a real kill would hit only by chance."""


@pytest.mark.slow
def test_a_kill_between_the_weights_and_the_train_state_resumes_exactly(quick_config, monkeypatch):
    """The weights file is renamed into place before the optimizer state; dying in between must not
    pair new weights with the old optimizer state."""
    from dataclasses import replace

    from workbench.methods import partial_ce
    from workbench.train import checkpoint
    from workbench.train.loop import train

    config = replace(quick_config, epochs=2, seed=5)
    reference = train(partial_ce, partial_ce.Config(), replace(config, out=config.out + "_reference"))
    real_save = torch.save

    def save_then_die_at_epoch_2(obj, path, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            raise _Killed
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save_then_die_at_epoch_2)
    with pytest.raises(_Killed):
        train(partial_ce, partial_ce.Config(), config)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    run = Path(config.out)
    assert torch.load(run / "checkpoint/train_state.pt", weights_only=True)["epoch"] == 1
    assert not list(run.rglob("*.tmp")), "a temporary file was left behind"

    resumed = train(partial_ce, partial_ce.Config(), replace(config, resume=True))
    ref, got = load_file(config.out + "_reference/checkpoint/model.safetensors"), load_file(run / checkpoint.MODEL_FILE)
    assert max((ref[k] - got[k]).abs().max().item() for k in ref) <= 1e-6
    assert resumed["miou"] == pytest.approx(reference["miou"], abs=1e-6)
    assert _losses(run) == _losses(Path(config.out + "_reference")), "the log repeats or misses steps"


def _losses(run: Path) -> list[tuple]:
    """The training curve a dashboard would plot: (epoch, step, loss) of every step record."""
    return [(r["epoch"], r["step"], r["loss"]) for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]


# ----------------------------------------------------------------------------- every method, killed mid-epoch


class _KilledMidEpoch(BaseException):
    """A kill at one exact step: nothing after the last checkpoint survives (as with SIGKILL)."""


def _kill_at(step: int):
    seen = iter(range(10**9))

    def poll() -> bool:  # polled once before each step
        if next(seen) == step:
            raise _KilledMidEpoch
        return False

    return poll


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_killed_mid_epoch_resumes_exactly(name, synthetic_root, tmp_path):
    """Memory banks (spml), non-persistent buffers (simformer) and the RNG travel with the checkpoint:
    a run killed in its second epoch and resumed ends with the weights of an uninterrupted run."""
    from dataclasses import fields, replace

    from workbench.train.config import TrainConfig
    from workbench.train.loop import train

    method = METHODS[name]
    weak_shot = "novel" in {f.name for f in fields(method.Config)}
    config = TrainConfig(
        data=str(synthetic_root), out=str(tmp_path / "killed"), epochs=2, batch_size=4, limit_train=8, limit_val=2,
        log_every=1, seed=7, scale_min=0.8, scale_max=1.2, protocol="objects2" if weak_shot else None,
        device="cpu",  # bit-exact: CUDA kernels with atomic adds are not deterministic
    )  # fmt: skip
    method_config = method.Config()
    reference = train(method, method_config, replace(config, out=str(tmp_path / "reference")))
    with pytest.raises(_KilledMidEpoch):
        train(method, method_config, config, should_stop=_kill_at(3))  # 2 steps per epoch: mid-epoch 2
    assert torch.load(tmp_path / "killed/checkpoint/train_state.pt", weights_only=True)["epoch"] == 1
    resumed = train(method, method_config, replace(config, resume=True))
    ref = load_file(tmp_path / "reference/checkpoint/model.safetensors")
    got = load_file(tmp_path / "killed/checkpoint/model.safetensors")
    max_diff = max((ref[k].double() - got[k].double()).abs().max().item() for k in ref)
    assert max_diff == 0.0, f"{name}: resumed weights differ from the uninterrupted run by up to {max_diff:.3g}"
    assert resumed["miou"] == reference["miou"]
    assert _losses(tmp_path / "killed") == _losses(tmp_path / "reference")


@pytest.mark.slow
def test_a_second_train_process_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path, synthetic_root):
    """Two real processes: the second names the first's pid and writes nothing; after a SIGKILL the
    kernel has dropped the lock, so a new run (--overwrite) takes the folder over."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    out = tmp_path / "run"
    first = subprocess.Popen(
        _train_command(synthetic_root, out, "--epochs=50"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, cwd=REPO,
    )  # fmt: skip
    lock = out / ".lock"
    while (not lock.exists() or not lock.read_text().strip()) and first.poll() is None:
        time.sleep(0.01)
    assert first.poll() is None, first.stderr.read().decode()
    config_before = (out / "config.json").read_bytes() if (out / "config.json").exists() else None
    second = subprocess.run(
        [*_train_command(synthetic_root, out), "--overwrite"], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert second.returncode == 2, second.stderr
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()
    if config_before is not None:
        assert (out / "config.json").read_bytes() == config_before, "the refused process wrote into the run"
    assert lock.read_text().strip() == str(first.pid)  # the dead holder's pid is still in the file
    third = subprocess.run(
        [*_train_command(synthetic_root, out), "--overwrite", "--epochs=1"], capture_output=True, text=True,
        env=env, cwd=REPO,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    assert (out / "report.json").is_file()
