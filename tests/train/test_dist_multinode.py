"""Two "nodes" on one machine: torchrun --nnodes 2 across two network namespaces matches 1 node x 2 processes.

Each node is a network namespace joined to the other by a veth pair, so the rendezvous (c10d's
TCP store), the process group (gloo) and every all-reduce cross a real network interface as
they would between two machines. Needs root and iproute2 (`ip`); CI runs as root and
.ci/run installs iproute2 when it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from workbench.data.synthetic import SyntheticConfig, generate
from workbench.train.checkpoint import MODEL_FILE, read_jsonl

TRAIN_ARGS = ["-m", "workbench", "train", "--method", "supervised", "--epochs", "1", "--batch_size=8",
              "--hflip=false", "--log_every=1"]  # fmt: skip
PORT = 29500  # free by construction: the namespaces are new
TIMEOUT_S = 300


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture
def two_nodes():
    """``[(namespace, interface, address), ...]`` of two namespaces joined by a veth pair; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (ip netns); CI runs as root")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` (apt-get install iproute2; .ci/run installs it)")
    tag, subnet = f"{os.getpid() % 100000}", f"10.231.{os.getpid() % 250}"
    nodes = [(f"wbnode{tag}{n}", f"wbv{tag}{n}", f"{subnet}.{k + 1}") for k, n in enumerate("ab")]
    made = []
    try:
        for ns, _, _ in nodes:
            _ip("netns", "add", ns)
            made.append(ns)
        (ns_a, if_a, _), (ns_b, if_b, _) = nodes
        _ip("link", "add", if_a, "type", "veth", "peer", "name", if_b)
        for ns, iface, addr in nodes:
            _ip("link", "set", iface, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", iface)
            _ip("-n", ns, "link", "set", iface, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except OSError as err:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot build two network namespaces here ({err})")
    yield nodes
    for ns in made:  # deleting a namespace deletes its end of the veth pair, and so the pair
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_nodes_match_one_node_with_two_processes(two_nodes, tmp_path):
    data = generate(tmp_path / "data", SyntheticConfig(height=32, width=32, train=16, val=8))
    host = two_nodes[0][2]
    procs = []
    for k, (ns, iface, addr) in enumerate(two_nodes):
        # is_host: node 0 serves the TCP store (c10d cannot tell that the endpoint is its own address inside
        # a namespace); --local-addr: the address the other node reaches this one at (not the machine's hostname)
        launch = ["ip", "netns", "exec", ns, sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                  "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{PORT}",
                  f"--rdzv-conf=is_host={str(k == 0).lower()}", f"--local-addr={addr}", "--rdzv-id=multinode",
                  "--max-restarts=0"]  # fmt: skip
        args = [*launch, *TRAIN_ARGS, "--data", str(data), "--out", str(tmp_path / "two_nodes")]
        log = open(tmp_path / f"node{k}.log", "w")  # closed below
        procs.append((subprocess.Popen(args, env={**_env(), "GLOO_SOCKET_IFNAME": iface}, stdout=log, stderr=log), log))
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p, _ in procs]
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    logs = "\n".join((tmp_path / f"node{k}.log").read_text()[-2000:] for k in range(2))
    assert codes == [0, 0], logs

    one = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *TRAIN_ARGS]  # torchrun -m workbench
    args = [sys.executable, *one, "--data", str(data), "--out", str(tmp_path / "one_node")]
    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]

    nodes, single = (read_jsonl(tmp_path / d / "metrics.jsonl") for d in ("two_nodes", "one_node"))
    assert nodes[-1]["world_size"] == 2 and nodes[-1]["ranks_in_sync"] is True
    assert [r["step"] for r in nodes] == [r["step"] for r in single]
    # the same two ranks on the same shards, summed by the same gloo all-reduce: the same numbers
    losses = [[r["loss"] for r in log if "loss" in r] for log in (nodes, single)]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert nodes[-1]["val_miou"] == pytest.approx(single[-1]["val_miou"], abs=1e-6)
    w_nodes, w_single = (load_file(str(tmp_path / d / MODEL_FILE)) for d in ("two_nodes", "one_node"))
    assert w_nodes.keys() == w_single.keys()
    worst = max(float((w_nodes[k].double() - w_single[k].double()).abs().max()) for k in w_nodes)
    assert worst < 1e-5
    assert Path(tmp_path / "two_nodes" / "report.json").is_file()
