"""Training on several processes (torchrun): joining and leaving the process group, the
collectives the training loop needs (all ranks stop together, means over ranks), the networks
wrapped in DistributedDataParallel, and batch norm whose statistics are those of the global
batch (SyncBatchNorm on GPUs, a gloo equivalent on CPUs). With one process every function here
is a no-op or a local computation.
"""

from __future__ import annotations

import os
import signal
import threading

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def start_distributed(device_spec: str) -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0

    use_cuda = torch.cuda.is_available() and not str(device_spec).startswith(("cpu", "mps"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def stop_distributed(world_size: int) -> None:
    if world_size > 1:
        if dist.is_initialized():
            dist.destroy_process_group()


def wait_for_every_rank(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def stop_everywhere(stop: threading.Event, world_size: int) -> bool:
    """All ranks stop after the same step, or the others would wait forever in a collective."""
    if world_size == 1:
        return stop.is_set()

    flag = torch.tensor([1.0 if stop.is_set() else 0.0])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def all_ranks_mean(total: float, count: int, world_size: int, device) -> float:
    if world_size == 1:
        return total / max(count, 1)

    sums = torch.tensor([total, float(count)], dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(sums)
    return float(sums[0] / sums[1].clamp_min(1))


def sync_batch_norm(module, device):
    """Batch statistics over all ranks: torch's SyncBatchNorm on GPUs; on CPUs (gloo), where
    torch's version is unavailable, CrossProcessBatchNorm2d."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for child in module.modules():
        if type(child) is torch.nn.BatchNorm2d:
            child.__class__ = CrossProcessBatchNorm2d
    return module


def data_parallel(module, device, world_size: int):
    """The module as the training steps call it: under torchrun wrapped in DistributedDataParallel
    (gradients averaged over ranks); with one process (or no module) the module itself."""
    if world_size <= 1 or module is None:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


class SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: the sum's gradient reaches every rank's input."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CrossProcessBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole global batch.

    The sums travel through a differentiable all_reduce, so the gradient is that of
    one process normalising the global batch."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        x32 = x.float()
        channels = x.shape[1]
        sums = torch.cat([x32.sum(dim=(0, 2, 3)), (x32 * x32).sum(dim=(0, 2, 3))])
        sums = SumOverRanks.apply(sums)
        count = x32.numel() // channels * dist.get_world_size()
        mean = sums[:channels] / count
        var = (sums[channels:] / count - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * count / max(count - 1, 1), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        y = x32 * scale[None, :, None, None] + (self.bias - mean * scale)[None, :, None, None]
        return y.to(x.dtype)


def catch_stop_signals(stop: threading.Event):
    """Ctrl-C / SIGTERM set `stop`: the current step finishes, then the run saves and exits.
    A second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = {}

    def request_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, request_stop)
    return previous


def restore_signals(previous) -> None:
    for signum, handler in (previous or {}).items():
        signal.signal(signum, handler)
