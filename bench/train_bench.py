"""Training throughput on this machine: images/s of the training step, of the loader alone and
of the hints `train --hints` samples.

    python bench/train_bench.py                # width 64 (the paper's) and 16 (the default model's), size 128
    python bench/train_bench.py --steps 5 --batch-size 16

measure(...) returns the figures as a dict and rows() turns them into `python -m bench`'s
rows; bench/gpu.py reuses the step functions below on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.report import Row  # noqa: E402
from portraitcolor import loader, setfile  # noqa: E402
from portraitcolor.device import autocast_as  # noqa: E402
from portraitcolor.losses import mae_loss  # noqa: E402
from portraitcolor.model import UNet, UNetConfig  # noqa: E402


def synthetic_set(path: Path, *, count: int, size: int, seed: int = 0) -> Path:
    """A set in setfile.py's layout filled with smooth random LAB images (realistic compression)."""
    import cv2
    import h5py

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    images = np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC) for image in coarse])
    with h5py.File(path, "w") as handle:
        handle.create_dataset(setfile.IMAGES, data=images, chunks=(min(setfile.CHUNK_IMAGES, count), size, size, 3), compression=setfile.COMPRESSION)
        handle.create_dataset(setfile.SOURCES, data=[f"{i}.png" for i in range(count)], dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset(setfile.SPLITS, data=np.zeros(count, np.uint8))
        handle.attrs.update({"format": setfile.FORMAT, "format_version": setfile.FORMAT_VERSION, "size": size,
                             "color_space": setfile.COLOR_SPACE, "tool_version": "bench", "options": "{}", "filter_report": "{}"})
    return path


def build_step(*, width: int, size: int, batch_size: int, device, precision: str = "fp32", channels_last: bool = False, compile_model: bool = False):
    """A training step of the U-Net (MAE, Adam) on a fixed random batch -> (step(), flops per step)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = UNet(UNetConfig(width=width, size=size)).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    l = torch.rand(batch_size, 1, size, size, device=device).contiguous(memory_format=memory_format)
    ab = torch.rand(batch_size, 2, size, size, device=device).contiguous(memory_format=memory_format)
    network = torch.compile(model) if compile_model else model

    def step():
        with autocast_as(device, precision):
            loss = mae_loss(network(l), ab)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    counter = FlopCounterMode(display=False)
    with counter:  # counted on the eager model: compile changes the kernels, not the arithmetic
        with autocast_as(device, precision):
            loss = mae_loss(model(l), ab)
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    return step, counter.get_total_flops()


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device, *, steps: int, warmup: int) -> float:
    """Seconds per step after warm-up."""
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - started) / steps


def measure_training(*, width: int, size: int = 128, batch_size: int = 8, steps: int = 3, warmup: int = 1,
                     device: str = "cpu", precision: str = "fp32", channels_last: bool = False, compile_model: bool = False) -> dict:
    device = torch.device(device)
    step, flops = build_step(width=width, size=size, batch_size=batch_size, device=device, precision=precision,
                             channels_last=channels_last, compile_model=compile_model)
    seconds = time_steps(step, device, steps=steps, warmup=warmup)
    return {"width": width, "size": size, "batch_size": batch_size, "precision": precision, "channels_last": channels_last,
            "compile": compile_model, "step_s": seconds, "images_per_s": batch_size / seconds,
            "tflops": flops / seconds / 1e12, "flops_per_step": flops}


def measure_inference(*, width: int, size: int = 128, batch_size: int = 64, steps: int = 5, warmup: int = 2,
                      device: str = "cpu", precision: str = "fp32", channels_last: bool = False) -> dict:
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = UNet(UNetConfig(width=width, size=size)).to(device).eval().to(memory_format=memory_format)
    l = torch.rand(batch_size, 1, size, size, device=device).contiguous(memory_format=memory_format)

    def step():
        with torch.inference_mode(), autocast_as(device, precision):
            return model(l)

    seconds = time_steps(step, device, steps=steps, warmup=warmup)
    return {"width": width, "size": size, "batch_size": batch_size, "precision": precision, "images_per_s": batch_size / seconds}


def measure_loader(path: Path, *, batch_size: int = 64, workers: int = 0, in_memory: bool = False, batches: int = 20) -> dict:
    """Images/s of the training reader alone (read, shuffle, augment, normalise)."""
    reader = loader.LabBatches(path, "train", batch_size=batch_size, in_memory=in_memory)
    images, started = 0, time.perf_counter()
    for count, (l, _ab, _rows) in enumerate(loader.loader(reader, workers=workers)):
        images += len(l)
        if count + 1 >= batches:
            break
    seconds = time.perf_counter() - started
    return {"batch_size": batch_size, "workers": workers, "in_memory": in_memory, "images_per_s": images / seconds}


def measure_hint_sampling(*, size: int = 128, batch_size: int = 32, batches: int = 20, device="cpu") -> dict:
    """Images/s of drawing and painting the hints a hint-aware training step adds to each batch."""
    l = torch.rand(batch_size, 1, size, size, device=device)
    ab = torch.rand(batch_size, 2, size, size, device=device)
    seconds = time_steps(lambda: loader.with_sampled_hints(l, ab), torch.device(device), steps=batches, warmup=2)
    return {"size": size, "batch_size": batch_size, "device": str(device), "images_per_s": batch_size / seconds}


def measure(*, widths=(64, 16), size: int = 128, batch_size: int = 8, steps: int = 3, loader_images: int = 1024) -> dict:
    """This CPU's figures: training images/s per width, the loader's images/s and the hint sampler's."""
    results = {"device": "cpu", "threads": torch.get_num_threads(), "training": [], "loader": []}
    for width in widths:
        results["training"].append(measure_training(width=width, size=size, batch_size=batch_size, steps=steps))
    with tempfile.TemporaryDirectory() as folder:
        path = synthetic_set(Path(folder) / "bench.h5", count=loader_images, size=size)
        for in_memory in (False, True):
            results["loader"].append(measure_loader(path, batch_size=64, in_memory=in_memory, batches=loader_images // 64))
    results["hints"] = measure_hint_sampling(size=size)
    return results


LOADER_TARGET = 10  # the loader must feed at least 10x what the fastest training step consumes


def rows(*, quick: bool, scratch: Path) -> list[Row]:
    """`python -m bench`'s rows: training images/s per width, and the loader and the hint sampler
    against the fastest training step. The sizes are measure()'s defaults with or without `quick` (the harness has
    always run them so), and measure() writes its loader set in a temporary folder of its own."""
    figures = measure()
    threads = figures["threads"]
    result = [
        Row(group="train", figure=f"training step w{run['width']} @{run['size']} b{run['batch_size']} ({threads} threads)",
            value=run["images_per_s"], unit="images/s", note=f"{run['tflops'] * 1e3:.1f} GFLOP/s", details=figures)
        for run in figures["training"]
    ]
    fastest = max(figures["training"], key=lambda run: run["images_per_s"])
    step_label = f"images/s: training step w{fastest['width']} @{fastest['size']} b{fastest['batch_size']}"
    for run in figures["loader"]:
        where = "split in memory" if run["in_memory"] else "streamed from the HDF5 file"
        ratio = run["images_per_s"] / fastest["images_per_s"]
        result.append(Row(group="train", figure=f"loader, {where}, batches of {run['batch_size']}", value=run["images_per_s"], unit="images/s",
                          ceiling=fastest["images_per_s"], ceiling_label=step_label, ratio=ratio,
                          target=f">= {LOADER_TARGET}x the training step", met=ratio >= LOADER_TARGET, details=figures))
    hints = figures["hints"]
    ratio = hints["images_per_s"] / fastest["images_per_s"]
    result.append(Row(group="train", figure=f"hints sampled for training (--hints), batches of {hints['batch_size']} @{hints['size']}", value=hints["images_per_s"],
                      unit="images/s", ceiling=fastest["images_per_s"], ceiling_label=step_label, ratio=ratio,
                      target=f">= {LOADER_TARGET}x the training step", met=ratio >= LOADER_TARGET, details=figures))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--widths", default="64,16")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results = measure(widths=[int(w) for w in args.widths.split(",")], size=args.size, batch_size=args.batch_size, steps=args.steps)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for row in results["training"]:
        print(f"train  width {row['width']:3d} size {row['size']} batch {row['batch_size']}: "
              f"{row['images_per_s']:8.1f} images/s  ({row['tflops'] * 1e3:.1f} GFLOP/s, {results['threads']} threads)")
    for row in results["loader"]:
        mode = "in memory" if row["in_memory"] else "streamed "
        print(f"loader {mode} batch {row['batch_size']} workers {row['workers']}: {row['images_per_s']:8.1f} images/s")


if __name__ == "__main__":
    main()
