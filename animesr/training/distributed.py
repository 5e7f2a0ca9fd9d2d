"""Multi-process training under torchrun (DDP): NCCL on CUDA, gloo on the CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from animesr.device import resolve_device


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), known before the group starts."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """The number of training processes: 1, or torchrun's WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def start_processes(device_name: str) -> Processes:
    """One process: the chosen device. Under torchrun: join the group, one GPU per process."""
    world = world_size()
    if world == 1:
        return Processes(0, 1, resolve_device(device_name))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), world, device)


def barrier(processes: Processes) -> None:
    if processes.world > 1:
        dist.barrier()


def stop_processes(processes: Processes) -> None:
    if processes.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def mean_across(value: torch.Tensor, processes: Processes) -> torch.Tensor:
    if processes.world > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= processes.world
    return value


def any_across(flag: bool, processes: Processes) -> bool:
    """True on every process when it is true on any (so that all of them stop at the same step)."""
    if processes.world == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=processes.device)
    dist.all_reduce(value)
    return bool(value.item() > 0)
