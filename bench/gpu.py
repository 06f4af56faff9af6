"""One prepared GPU run (under 8 minutes on an H100/H200): training and inference throughput.

    python bench/gpu.py OUT_DIR            # on the GPU machine; writes OUT_DIR/gpu_bench.json
    python bench/gpu.py OUT_DIR --dry-run  # tiny CPU version of the same script (checks it runs)
    python bench/gpu.py OUT_DIR --batch-sizes 256  # one batch size: about a quarter of the time

Training images/s and achieved TFLOP/s (FLOPs of one step counted by FlopCounterMode)
for fp32, bf16, bf16 + channels_last and bf16 + channels_last + torch.compile at batch
sizes that fill the card; inference images/s; the hint sampler's images/s (what --hints
adds to a step); and the loader's images/s with workers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from train_bench import measure_hint_sampling, measure_inference, measure_loader, measure_training, synthetic_set  # noqa: E402

VARIANTS = (  # (label, precision, channels_last, compile)
    ("fp32", "fp32", False, False),
    ("bf16", "bf16", False, False),
    ("bf16+channels_last", "bf16", True, False),
    ("bf16+channels_last+compile", "bf16", True, True),
)


def run(out_dir: Path, *, dry_run: bool, batch_sizes: tuple[int, ...] = (64, 256, 512)) -> dict:
    device = "cpu" if dry_run else "cuda"
    width, size = (4, 32) if dry_run else (64, 128)
    batch_sizes = (4,) if dry_run else batch_sizes
    steps, warmup = (2, 1) if dry_run else (15, 5)
    started = time.perf_counter()
    results = {
        "dry_run": dry_run, "torch": torch.__version__, "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() and not dry_run else None,
        "width": width, "size": size, "training": [], "inference": [], "loader": [], "hints": None,
    }

    def save():
        results["seconds"] = time.perf_counter() - started
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "gpu_bench.json").write_text(json.dumps(results, indent=2) + "\n")

    for label, precision, channels_last, compile_model in VARIANTS:
        if dry_run and compile_model:
            continue  # compiling on a CPU needs a C toolchain and minutes: GPU only
        # bf16 autocast on a CPU is not what the GPU run measures; the dry run checks the code path in fp32
        precision = "fp32" if dry_run else precision
        for batch_size in batch_sizes:
            try:
                row = measure_training(width=width, size=size, batch_size=batch_size, steps=steps, warmup=warmup,
                                       device=device, precision=precision, channels_last=channels_last, compile_model=compile_model)
            except torch.OutOfMemoryError:
                print(f"{label} batch {batch_size}: out of memory", flush=True)
                torch.cuda.empty_cache()
                break
            row["variant"] = label
            results["training"].append(row)
            print(f"train {label:28s} batch {batch_size:4d}: {row['images_per_s']:9.1f} images/s  {row['tflops']:7.2f} TFLOP/s", flush=True)
            save()
        if not dry_run:
            torch.cuda.empty_cache()

    for batch_size in batch_sizes:
        row = measure_inference(width=width, size=size, batch_size=batch_size, device=device,
                                precision="fp32" if dry_run else "bf16", channels_last=not dry_run)
        results["inference"].append(row)
        print(f"inference bf16+channels_last batch {batch_size:4d}: {row['images_per_s']:9.1f} images/s", flush=True)
    results["hints"] = measure_hint_sampling(size=size, batch_size=batch_sizes[-1], device=device)
    print(f"hints sampled for training, batch {batch_sizes[-1]}: {results['hints']['images_per_s']:9.1f} images/s", flush=True)
    save()

    with tempfile.TemporaryDirectory() as folder:
        count = 256 if dry_run else 8192
        path = synthetic_set(Path(folder) / "bench.h5", count=count, size=size)
        worker_counts = (0,) if dry_run else (0, 4, min(8, os.cpu_count() or 1))
        for in_memory in (False, True):
            for workers in worker_counts:
                row = measure_loader(path, batch_size=batch_sizes[-1] if not dry_run else 32, workers=workers,
                                     in_memory=in_memory, batches=8 if dry_run else 24)
                results["loader"].append(row)
                print(f"loader {'in memory' if in_memory else 'streamed'} workers {workers}: {row['images_per_s']:9.1f} images/s", flush=True)
    save()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder for gpu_bench.json")
    parser.add_argument("--dry-run", action="store_true", help="tiny CPU version (checks the script, measures nothing useful)")
    parser.add_argument("--batch-sizes", type=lambda text: tuple(int(size) for size in text.split(",")), default=(64, 256, 512),
                        help="training and inference batch sizes, comma-separated (default 64,256,512); the loader uses the last")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device here (use --dry-run to check the script on a CPU)")
    run(args.out_dir, dry_run=args.dry_run, batch_sizes=args.batch_sizes)


if __name__ == "__main__":
    main()
