"""Evaluate models on held-out portraits, with the trivial baselines beside them.

    evaluate(targets, models=..., options=...) -> Evaluation   per-image metrics per method

report.py turns an Evaluation into what people read: the table, JSON, CSV and HTML report.

A target is an HDF5 set (one of its splits) or colour photos, which are turned gray
internally. Every method sees the same images and the true L: the models predict ab, the
"gray" baseline predicts ab = 0 and the "mean ab" baseline predicts the training set's mean
ab everywhere. A model that cannot beat them has learnt nothing worth having.

The numbers are deterministic: images are read in a fixed order and batched the same way
on every run, and nothing random enters the metrics (the report's random sample is seeded).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import metrics, runs
from .config import EvaluateOptions
from .device import pick_device, prepare_model
from .hints import HintError, predict_following, sample_from_truth
from .images import Picture, signed_exif
from .inference import SIDE_MULTIPLE, check_takes_hints, colorize_picture, open_predictor, uses_torch
from .inputs import utf8_name
from .lab import l_to_net, lab_to_rgb, rgb_to_lab
from .store import WeightsStore, is_path_spec, resolve_model
from .targets import Batch, EvaluateError, FailureCallback, PhotoTarget, SetTarget, open_target
from .weights import BUILTIN_NAME

GRAY = "gray"
HINT_SEED = 20171
MEAN_AB = "mean ab"
BASELINES = (GRAY, MEAN_AB)

ProgressCallback = Callable[[int, int], None]  # (images done, images in total)


# Height of each picture in a strip of the report.
STRIP_TILE_HEIGHT = 128


@dataclass(frozen=True)
class ModelUnderTest:
    label: str
    model: object  # model.UNet, with .metadata from the weights file
    spec: str | None = None  # as the user named it (store name, path); None: run `model` itself

    @property
    def metadata(self) -> dict:
        return getattr(self.model, "metadata", None) or {}


@dataclass
class Evaluation:
    target: str
    split: str | None
    size: int | None  # side the models ran at; None at full resolution
    device: str
    keys: list[int]  # each image's position in the target (its split, or the file list)
    sources: list[str]
    methods: dict[str, dict[str, np.ndarray]]  # method -> metric name -> (N,) float64
    model_labels: list[str]
    models: list[dict]  # label, config, training summary of each model
    mean_ab: tuple[float, float] | None
    notes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    # With EvaluateOptions.strips: per image, gray input | each model | truth as JPEG bytes
    strips: list[bytes] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.sources)


# ---- models --------------------------------------------------------------------------


def load_models(specs: list[str] | None, *, most: int | None = 2) -> list[ModelUnderTest]:
    """Resolve model specs (path, store name; none: the default model), at most `most` of them
    (None: any number, for comparisons outside the report's layout)."""

    specs = list(specs or [])
    if most is not None and len(specs) > most:
        raise EvaluateError(f"at most two models can be compared, {len(specs)} were given")
    store = WeightsStore()
    if not specs:
        name = store.default_name() or BUILTIN_NAME
        return [ModelUnderTest(name, resolve_model(None, store=store), name)]
    models = []
    for spec in specs:
        model = resolve_model(spec, store=store)
        label = Path(spec).stem if spec.endswith(".safetensors") or os.sep in spec else spec
        models.append(ModelUnderTest(_unique_label(label, [m.label for m in models]), model, spec))
    return models


def engines_for(models: list[ModelUnderTest], device: str) -> dict:
    """Each model on the engine colorize gives it for this --device (the CPU: a stored model's
    ONNX form through OpenCV), so that evaluate measures the colours users get."""
    from .torch_inference import TorchPredictor

    engines = {}
    for m in models:
        if m.spec is not None and not uses_torch(device) and not is_path_spec(m.spec):
            engines[m.label] = open_predictor(m.spec, device="cpu")
        else:
            engines[m.label] = TorchPredictor(prepare_model(m.model, pick_device(device)), name=m.label)
    return engines


def _unique_label(label: str, taken: list[str]) -> str:
    if label in BASELINES:
        label = f"{label} (model)"
    candidate, number = label, 2
    while candidate in taken:
        candidate, number = f"{label} ({number})", number + 1
    return candidate


# ---- predictions ------------------------------------------------------------------------


def predict_ab(engine, true_l: np.ndarray, hints: np.ndarray | None = None) -> np.ndarray:
    """The model's ab for a batch of L: (B, S, S) CIELAB L -> (B, S, S, 2) CIELAB ab, float32.

    The same network call as colorize (an inference.Predictor), in evaluate's channels-last
    layout; hints: (B, HINT_CHANNELS, S, S) for a hint-aware model.
    """

    l_net = np.ascontiguousarray(l_to_net(true_l), dtype=np.float32)[:, None]  # (B, 1, S, S)
    return predict_following(engine, l_net, hints).transpose(0, 2, 3, 1)  # (B, 2, S, S) -> (B, S, S, 2)


def sampled_hints(batch: Batch, count: int) -> np.ndarray | None:
    """evaluate --hints: `count` hints per image from its true colours, seeded by the image's
    key, so every model and every run sees the same ones."""

    if not count:
        return None
    return np.stack([
        sample_from_truth(true_lab[..., 1:], count, np.random.default_rng([HINT_SEED, key]))
        for key, true_lab in zip(batch.keys, batch.true_lab)
    ])


def _check_hints_apply(engines: dict, options: EvaluateOptions) -> None:

    if options.full_res:
        raise HintError("--hints works on images at the model's size, not with --full-res")
    for engine in engines.values():
        check_takes_hints(engine)


def _with_ab(true_lab: np.ndarray, ab: np.ndarray) -> np.ndarray:
    lab = np.empty_like(true_lab)
    lab[..., 0] = true_lab[..., 0]
    lab[..., 1:] = ab
    return lab


def method_outputs(target, models, mean_ab, options, engines, *, only=None, on_failure=None):
    """Yield (batch, {method: predicted LAB (B, S, S, 3)}) in the target's order."""
    if options.full_res:
        yield from _full_res_outputs(target, models, mean_ab, options, engines, only=only, on_failure=on_failure)
        return
    if isinstance(target, SetTarget):
        batches = target.batches(options.batch_size, only=only)
    else:
        batches = target.batches(options.batch_size, size=models[0].model.config.size, only=only, on_failure=on_failure)
    for batch in batches:
        hints = sampled_hints(batch, options.hints)
        predicted = {m.label: _with_ab(batch.true_lab, predict_ab(engines[m.label], batch.true_lab[..., 0], hints)) for m in models}
        predicted.update(_baseline_outputs(batch.true_lab, mean_ab))
        yield batch, predicted


def _baseline_outputs(true_lab: np.ndarray, mean_ab) -> dict[str, np.ndarray]:
    outputs = {GRAY: _with_ab(true_lab, np.zeros(2, np.float32))}
    if mean_ab is not None:
        outputs[MEAN_AB] = _with_ab(true_lab, np.asarray(mean_ab, np.float32))
    return outputs


def _full_res_outputs(target, models, mean_ab, options, engines, *, only, on_failure):
    """Photos at their own size through colorize's path (ab rendered small, upsampled)."""

    for key, source, picture in target.pictures(only=only, on_failure=on_failure):
        true_lab = rgb_to_lab(picture.rgb)[None]  # (1, H, W, 3)
        # The models get a gray picture, so nothing of the true colour can leak into them.
        gray = Picture(rgb=lab_to_rgb(_with_ab(true_lab, np.zeros(2, np.float32)))[0])
        predicted = {}
        for m in models:
            rgb = colorize_picture(engines[m.label], gray)
            predicted[m.label] = _with_ab(true_lab, rgb_to_lab(np.asarray(rgb, np.float32))[None][..., 1:])
        predicted.update(_baseline_outputs(true_lab, mean_ab))
        yield Batch([key], [source], true_lab, picture.rgb[None].astype(np.float32)), predicted


# ---- the evaluation ---------------------------------------------------------------------


def evaluate(
    targets: list[str | os.PathLike],
    *,
    models: list[ModelUnderTest],
    options: EvaluateOptions = EvaluateOptions(),
    on_progress: ProgressCallback | None = None,
    on_failure: FailureCallback | None = None,
) -> Evaluation:
    """Per-image metrics of every model and baseline on the same images."""

    if not models:
        raise EvaluateError("no model to evaluate")
    if options.batch_size < 1:
        raise EvaluateError(f"batch size must be at least 1, got {options.batch_size}")
    target = open_target([Path(t) for t in targets], options)
    size = None if options.full_res else (target.size if isinstance(target, SetTarget) else models[0].model.config.size)
    notes = _size_notes(target, models, size)
    device = pick_device(options.device)  # for the metrics
    engines = engines_for(models, options.device)
    if options.hints:
        _check_hints_apply(engines, options)
    mean_ab, note = _mean_ab(target, models)
    notes.append(note)
    if options.hints:
        notes.append(f"the models had {options.hints} hints per image, sampled from its true colours")

    failures: list[tuple[str, str]] = []

    def failed(source: str, reason: str) -> None:
        failures.append((source, reason))
        if on_failure is not None:
            on_failure(source, reason)

    started = time.perf_counter()
    keys, sources, per_method, strips = [], [], {}, []
    # The methods' metrics are independent numpy/torch work that releases the GIL: one
    # thread per method uses the cores that a single numpy call leaves idle.
    with ThreadPoolExecutor(max_workers=len(models) + len(BASELINES)) as pool:
        for batch, predicted in method_outputs(target, models, mean_ab, options, engines, on_failure=failed):
            futures = {
                method: pool.submit(_method_figures, predicted_lab, batch.true_lab, batch.true_rgb, device)
                for method, predicted_lab in predicted.items()
            }
            predicted_rgb = {}
            for method, future in futures.items():
                figures, predicted_rgb[method] = future.result()
                per_method.setdefault(method, []).append(figures)
            keys.extend(batch.keys)
            sources.extend(batch.sources)
            if options.strips:
                strips.extend(_strips(batch, predicted_rgb, models))
            if on_progress is not None:
                on_progress(len(keys) + len(failures), target.count)
    left_out = sorted(target.colorized)
    if left_out:
        named = ", ".join(left_out[:3]) + (", ..." if len(left_out) > 3 else "")
        notes.append(f"left out {len(left_out)} images written by portraitcolor (colorize results, report strips: a model's colours are no truth to measure against): {named}")
    if not sources:
        raise EvaluateError("none of the images could be read" if not left_out else "every image was written by portraitcolor (colorize results, report strips): nothing true to measure against")
    methods = {
        method: {name: np.concatenate([values[name] for values in batches]) for name in batches[0]}
        for method, batches in per_method.items()
    }
    return Evaluation(
        target=", ".join(utf8_name(str(t)) for t in targets),
        split=options.split if isinstance(target, SetTarget) else None,
        size=size,
        device=str(device),
        keys=keys,
        sources=sources,
        methods=methods,
        model_labels=[m.label for m in models],
        models=[{"label": m.label, "config": m.metadata.get("config"), "training": m.metadata.get("training") or {}} for m in models],
        mean_ab=mean_ab,
        notes=notes,
        failures=failures,
        seconds=time.perf_counter() - started,
        strips=strips,
    )


def _strips(batch: Batch, predicted_rgb: dict, models: list[ModelUnderTest]) -> list[bytes]:
    """Each image of the batch as gray | each model | truth, STRIP_TILE_HEIGHT pixels high:
    small enough to keep for every image, so that a report never runs the models again."""
    return [jpeg_bytes(strip_of(batch, predicted_rgb, models, i)) for i in range(len(batch.keys))]


def rgb_of(predicted: dict) -> dict:
    """method_outputs' LAB of each method -> its RGB (0..1), what strip_of takes."""
    return {method: lab_to_rgb(predicted_lab) for method, predicted_lab in predicted.items()}


def strip_of(batch: Batch, predicted_rgb: dict, models: list[ModelUnderTest], i: int) -> np.ndarray:
    """Image i of the batch as gray input | each model | truth, uint8 RGB, from each method's RGB
    (converted once, for the metrics and the strip alike)."""
    tiles = [predicted_rgb[GRAY][i], *(predicted_rgb[m.label][i] for m in models), batch.true_rgb[i]]
    return strip_image(tiles)


def strip_image(tiles: list[np.ndarray]) -> np.ndarray:

    height, width = tiles[0].shape[:2]
    scale = STRIP_TILE_HEIGHT / height
    # Small images are enlarged without smoothing, so each pixel stays visible as it is.
    resample = Image.NEAREST if scale >= 1 else Image.LANCZOS
    new_size = (max(1, round(width * scale)), STRIP_TILE_HEIGHT)
    gap = 4
    canvas = Image.new("RGB", (len(tiles) * (new_size[0] + gap) - gap, STRIP_TILE_HEIGHT), "white")
    for i, tile in enumerate(tiles):
        image = Image.fromarray(np.clip(np.rint(tile * 255), 0, 255).astype(np.uint8)).resize(new_size, resample)
        canvas.paste(image, (i * (new_size[0] + gap), 0))
    return np.asarray(canvas)


def jpeg_bytes(image: np.ndarray) -> bytes:

    buffer = io.BytesIO()
    # Full-resolution chroma (no 4:2:0 subsampling): the colours are what a report shows.
    # Signed like colorize's results: a later run over a folder holding the report leaves it out.
    Image.fromarray(image).save(buffer, format="JPEG", quality=92, subsampling=0, exif=signed_exif(None))
    return buffer.getvalue()


def _method_figures(predicted_lab, true_lab, true_rgb, device) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One method's per-image metrics on a batch, and its RGB (kept for the report's strips)."""
    predicted_rgb = lab_to_rgb(predicted_lab)
    figures = metrics.image_metrics(predicted_lab=predicted_lab, true_lab=true_lab, predicted_rgb=predicted_rgb, true_rgb=true_rgb, device=device)
    return figures, predicted_rgb


def _size_notes(target, models, size) -> list[str]:

    if size is None:
        return ["full resolution: the models' ab is rendered at their size and upsampled (colorize's path)"]
    if size % SIDE_MULTIPLE:
        raise EvaluateError(f"image size {size} is not a multiple of {SIDE_MULTIPLE}, which the U-Net needs")
    notes = []
    if isinstance(target, PhotoTarget):
        notes.append(f"photos centre-cropped and resized to {size}x{size}, the size of model {models[0].label}")
    for m in models:
        if m.model.config.size != size:
            notes.append(f"model {m.label} was trained at {m.model.config.size}x{m.model.config.size} and runs at {size}x{size} here")
    return notes


def _mean_ab(target, models) -> tuple[tuple[float, float] | None, str]:
    if isinstance(target, SetTarget):
        return target.mean_ab()
    value = runs.mean_ab_of(models[0].metadata.get("training"))
    if value is not None:
        a, b = value
        return (a, b), f"mean ab baseline: a={a:.2f}, b={b:.2f}, from model {models[0].label}'s training summary"
    return None, f"mean-ab baseline skipped: model {models[0].label}'s metadata records no training mean ab"
