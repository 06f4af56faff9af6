"""The U-Net on the CPU: forward and training-step rates against the machine's matmul rate,
and the execution settings (threads, memory format, batch size, upsampling, grad mode)
compared figure against figure."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from portraitcolor.model import UNet, UNetConfig, UpStage

from .report import Row
from .timing import best_seconds, interleaved_best

FORWARD_TARGET = 0.5  # issue 7: forward at >= 50% of the large-matmul GFLOP/s


@dataclass(frozen=True)
class Scale:
    """How big and how often: the full run and --quick share the code, not the sizes."""

    matmul_side: int
    size: int
    batch: int
    repeats: int
    widths: tuple[int, ...]

    @classmethod
    def pick(cls, quick: bool) -> "Scale":
        if quick:
            return cls(matmul_side=512, size=32, batch=2, repeats=1, widths=(16, 64))
        return cls(matmul_side=2048, size=128, batch=8, repeats=3, widths=(64, 16))


def thread_counts() -> tuple[int, ...]:
    """1 and all: on a shared machine one thread often wins, as busy cores stall the others."""
    return tuple(sorted({1, torch.get_num_threads()}, reverse=True))


@contextlib.contextmanager
def threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def matmul_gflops(*, side: int, repeats: int) -> float:
    """The ceiling: float32 torch.mm of two side x side matrices, best of `repeats` and of 1 or all threads."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    best = float("inf")
    for count in thread_counts():
        with threads(count):
            best = min(best, best_seconds(lambda: torch.mm(a, b), repeats=max(repeats, 3)))
    return 2 * side**3 / best / 1e9


def count_flops(work) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def random_model(width: int, size: int = 128) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(width=width, size=size)).eval()


def forward_rate(model: UNet, batch: torch.Tensor, *, repeats: int) -> tuple[float, int]:
    """(images/s, FLOPs per image) of the inference forward pass."""
    def work():
        with torch.inference_mode():
            model(batch)

    flops = count_flops(work)
    seconds = best_seconds(work, repeats=repeats)
    return batch.shape[0] / seconds, flops // batch.shape[0]


def train_step_rate(model: UNet, batch: torch.Tensor, *, repeats: int) -> tuple[float, int]:
    """(images/s, FLOPs per image) of forward + backward (MAE) + Adam."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.rand(batch.shape[0], 2, *batch.shape[2:])

    def forward_backward():
        loss = (model(batch) - target).abs().mean()
        loss.backward()
        return loss

    def step():
        optimizer.zero_grad(set_to_none=True)
        forward_backward()
        optimizer.step()

    flops = count_flops(forward_backward)
    seconds = best_seconds(step, repeats=repeats)
    model.eval()
    return batch.shape[0] / seconds, flops // batch.shape[0]


def unet_rows(scale: Scale, matmul: float) -> list[Row]:
    rows = []
    for width in scale.widths:
        model = random_model(width, scale.size)
        batch = torch.rand(scale.batch, 1, scale.size, scale.size)
        forward = {}
        for count in thread_counts():
            with threads(count):
                forward[count] = forward_rate(model, batch, repeats=scale.repeats)
        best_count = max(forward, key=lambda count: forward[count][0])
        for kind in ("forward", "train step"):
            if kind == "forward":
                rate, flops = forward[best_count]
            else:
                with threads(best_count):
                    rate, flops = train_step_rate(model, batch, repeats=scale.repeats)
            gflops = rate * flops / 1e9
            is_forward = kind == "forward"
            rows.append(Row(
                group="U-Net", figure=f"{kind} w{width} @{scale.size} b{scale.batch}", value=gflops, unit="GFLOP/s",
                ceiling=matmul, ceiling_label="GFLOP/s matmul", ratio=gflops / matmul,
                target=f">= {FORWARD_TARGET:.0%} of matmul" if is_forward else "",
                met=(gflops / matmul >= FORWARD_TARGET) if is_forward else None,
                note=f"{rate:.1f} images/s, {flops / 1e9:.2f} GFLOP/image, {best_count} thread(s)"
                + (" (forward images/s by threads: " + ", ".join(f"{c}: {r:.1f}" for c, (r, _) in forward.items()) + ")" if is_forward else ""),
                details={"threads": best_count, "images_per_s": rate, "flops_per_image": flops, "width": width, "size": scale.size, "batch": scale.batch},
            ))
    return rows


# ---- execution settings -------------------------------------------------------------


class BilinearUpStage(UpStage):
    """Benchmark-only variant of UpStage with bilinear instead of nearest upsampling."""

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.block(torch.cat([x, skip], dim=1))


def bilinear_copy(model: UNet) -> UNet:
    variant = random_model(model.config.width, model.config.size)
    variant.load_state_dict(model.state_dict())
    for stage in variant.up:
        stage.__class__ = BilinearUpStage  # same parameters, only forward differs
    return variant.eval()


def _forward(model, batch, *, grad_mode=torch.inference_mode, thread_count: int | None = None):
    def work():
        previous = torch.get_num_threads()
        if thread_count:
            torch.set_num_threads(thread_count)
        try:
            with grad_mode():
                model(batch)
        finally:
            torch.set_num_threads(previous)
    return work


def settings_rows(scale: Scale) -> list[Row]:
    """Each setting against the default (width 16, nearest, contiguous, inference_mode, all threads)."""
    width = 16
    model = random_model(width, scale.size)
    batch = torch.rand(scale.batch, 1, scale.size, scale.size)
    rounds = scale.repeats + 1
    all_threads = torch.get_num_threads()
    model_cl = random_model(width, scale.size).to(memory_format=torch.channels_last)
    batch_cl = batch.contiguous(memory_format=torch.channels_last)
    comparisons = {
        "threads": {
            f"{all_threads} threads": _forward(model, batch),
            "1 thread": _forward(model, batch, thread_count=1),
        },
        "memory format": {
            "contiguous": _forward(model, batch),
            "channels_last": _forward(model_cl, batch_cl),
        },
        "upsampling": {
            "nearest": _forward(model, batch),
            "bilinear": _forward(bilinear_copy(model), batch),
        },
        "grad mode": {
            "inference_mode": _forward(model, batch),
            "no_grad": _forward(model, batch, grad_mode=torch.no_grad),
        },
    }
    sizes = {name: scale.batch for variants in comparisons.values() for name in variants}
    batch_sizes = (1, 8, 32) if scale.size >= 64 else (1, 2, 4)
    comparisons["batch size"] = {}
    for size in batch_sizes:
        name = f"batch {size}"
        sizes[name] = size
        comparisons["batch size"][name] = _forward(model, torch.rand(size, 1, scale.size, scale.size))
    rows = []
    best_threads = all_threads
    for setting, variants in comparisons.items():
        # The other settings are compared at the thread count that won, where noise is lowest.
        with threads(best_threads):
            seconds = interleaved_best(variants, rounds=rounds)
        rates = {name: sizes[name] / seconds[name] for name in variants}
        baseline_name = next(iter(variants))
        best = max(rates, key=rates.get)
        if setting == "threads":
            best_threads = 1 if best == "1 thread" else all_threads
        for name, rate in rates.items():
            rows.append(Row(
                group="setting", figure=f"{setting}: {name} (w{width} @{scale.size}{'' if setting == 'threads' else f', {best_threads} thr'})", value=rate, unit="images/s",
                ceiling=rates[baseline_name], ceiling_label=f"images/s {baseline_name}", ratio=rate / rates[baseline_name],
                note="fastest" if name == best else "", details={"setting": setting, "variant": name, "fastest": name == best},
            ))
    return rows
