"""torch.distributed in a few functions. The single-process path never initialises a process group.

Launch with ``torchrun --nproc-per-node N -m workbench train ...`` (gloo on CPU, nccl on GPU);
``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK, which :func:`init_from_env` reads.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (if any); return this rank's device."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum across ranks in place (confusion matrices are summed, never averaged as mIoUs)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj) -> list:
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def params_in_sync(model: torch.nn.Module) -> bool:
    """True when every rank holds the same weights (checked through a checksum of all parameters)."""
    if not is_distributed():
        return True
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = all_gather_objects(float(total))
    return max(gathered) - min(gathered) <= 1e-9 * max(1.0, abs(gathered[0]))


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()
