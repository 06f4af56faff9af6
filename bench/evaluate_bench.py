"""Throughput of `portraitcolor evaluate` on a synthetic set (not a test).

    python bench/evaluate_bench.py [--images 512] [--size 128] [--width 16] [--device auto]

Prints one JSON object: images/s of the whole evaluation (reading, inference for the model,
both baselines, every metric) and of the model's inference alone. rows() gives the same
figures to `python -m bench`, the inference alone as the ceiling.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import Row  # noqa: E402

SPLIT_CYCLE = ("train", "test")  # half train (for the mean-ab baseline), half test


def measure(*, images: int = 512, size: int = 128, width: int = 16, batch_size: int = 64, device: str = "auto") -> dict:
    """Evaluate a random width-`width` model on `images` synthetic test portraits of side `size`."""
    import numpy as np
    import torch

    from portraitcolor import evaluate as core
    from portraitcolor.config import EvaluateOptions
    from portraitcolor.device import pick_device
    from portraitcolor.model import UNet, UNetConfig
    from tests.conftest import portrait_array, write_set

    with tempfile.TemporaryDirectory() as folder:
        portraits = np.stack([portrait_array(size, size, seed=i) for i in range(2 * images)])
        set_path = write_set(Path(folder) / "bench.h5", portraits, [SPLIT_CYCLE[i % 2] for i in range(2 * images)])
        torch.manual_seed(0)
        model = UNet(UNetConfig(width=width, size=size)).eval()
        models = [core.ModelUnderTest("bench", model)]
        options = EvaluateOptions(device=device, batch_size=batch_size)
        core.evaluate([set_path], models=models, options=EvaluateOptions(device=device, batch_size=batch_size, limit=batch_size))  # warm-up
        evaluation = core.evaluate([set_path], models=models, options=options)
        inference_seconds = _inference_seconds(model, set_path, batch_size, pick_device(device))
    return {
        "images": evaluation.count,
        "size": size,
        "width": width,
        "batch_size": batch_size,
        "device": evaluation.device,
        "seconds": round(evaluation.seconds, 3),
        "images_per_second": round(evaluation.count / evaluation.seconds, 1),
        "inference_images_per_second": round(evaluation.count / inference_seconds, 1),
    }


def rows(*, quick: bool, scratch: Path) -> list[Row]:
    """`python -m bench`'s row: evaluate on the CPU over 32 test images with `quick`, else 512,
    against its model's inference alone (measure() writes its set in a temporary folder of its own)."""
    figures = measure(images=32 if quick else 512, device="cpu")
    rate, inference = figures["images_per_second"], figures["inference_images_per_second"]
    figure = f"images/s ({figures['images']} images @{figures['size']}, w{figures['width']}, batch {figures['batch_size']}, {figures['device']})"
    return [Row(group="evaluate", figure=figure, value=rate, unit="images/s", ceiling=inference,
                ceiling_label="images/s: its inference alone", ratio=rate / inference if inference else None, details=figures)]


def _inference_seconds(model, set_path: Path, batch_size: int, device) -> float:
    import torch

    from portraitcolor.evaluate import predict_ab
    from portraitcolor.lab import decode_lab8
    from portraitcolor.setfile import iter_split
    from portraitcolor.torch_inference import TorchPredictor

    batches = [decode_lab8(lab8)[..., 0] for _, lab8 in iter_split(set_path, "test", batch_size=batch_size)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    engine = TorchPredictor(model)
    for l in batches:
        predict_ab(engine, l)  # copies back to the host, so it waits for the device
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    arguments = parser.parse_args()
    print(json.dumps(measure(images=arguments.images, size=arguments.size, width=arguments.width, batch_size=arguments.batch_size, device=arguments.device)))


if __name__ == "__main__":
    main()
