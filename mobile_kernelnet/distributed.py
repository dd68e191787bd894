"""`mkn train` under torchrun: DistributedDataParallel on CPU (gloo) or GPUs (nccl).

Run as one process, `mkn train` is unchanged. Under ``torchrun --nproc-per-node N``
(which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous), every rank builds
the same model, pool and validation set from ``--seed``, draws its own training pairs
(rank ``r > 0`` reseeds the data generator with ``(seed, r)``; rank 0 draws what a
one-process run draws), and the gradients are averaged across ranks by DDP, so one step
trains on ``N x --batch`` pairs. Rank 0 alone validates, logs and writes checkpoints.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
from torch import distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates, logs and checkpoints."""
        return self.rank == 0


def start(device: str = "cpu") -> tuple[Ranks, torch.device]:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on
    CUDA; nothing to do for a single process); returns this process's ranks and device
    (``cuda:LOCAL_RANK`` for ``device="cuda"``). Raises ValueError when CUDA is asked for
    and absent."""
    ranks = Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                  int(os.environ.get("LOCAL_RANK", 0)))
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available to this process")
        torch.cuda.set_device(ranks.local_rank)
        where = torch.device("cuda", ranks.local_rank)
    elif device == "cpu":
        where = torch.device("cpu")
    else:
        raise ValueError(f"--device must be cpu or cuda, not {device!r}")
    if ranks.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    return ranks, where


def stop() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def parallel(module: nn.Module, ranks: Ranks) -> nn.Module:
    """``module`` itself in a single process, else wrapped in DistributedDataParallel
    (gradients averaged over ranks in its backward pass)."""
    if ranks.world_size == 1:
        return module
    device_ids = [ranks.local_rank] if next(module.parameters()).is_cuda else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


class StagesOf(nn.Module):
    """A module whose ``forward`` is ``net.stages`` (DDP averages gradients of ``forward`` only)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net.stages(x)


def weights_digest(module: nn.Module) -> str:
    """sha256 of ``module``'s parameters and buffers (bytes, in state-dict order)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def digests_of_all_ranks(module: nn.Module, ranks: Ranks) -> list[str]:
    """:func:`weights_digest` of ``module`` on every rank, in rank order (collective)."""
    mine = weights_digest(module)
    if ranks.world_size == 1:
        return [mine]
    out: list = [None] * ranks.world_size
    dist.all_gather_object(out, mine)
    return out


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (nothing in a single process)."""
    if ranks.world_size > 1:
        dist.barrier()
