"""Compare models on an out-of-domain yardstick of colour photos of people.

    python scripts/yardstick.py ../shared/data/people/yardstick/interfaces_cc0 \
        -m builtin -m mine -m run/best.safetensors --worst 8 --strip docs/yardstick-worst.png

Every model runs on the same photos (made gray, centre-cropped to the model's size, as
`portraitcolor evaluate` does) and the table gives, per model: ab error as a ratio of the
gray baseline's, CIEDE2000, PSNR beside gray's, the colourfulness ratio to the truth, and
the share of photos on which the model's ab error beats gray's. --strip writes the photos
where the last model does worst against gray: gray input | each model | truth.

Why a separate yardstick: a held-out split of the training corpus shares its studio, its
backgrounds and its clothes, so it cannot show a model that paints everything in skin
tones. Models must be judged on photos like the ones users bring.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portraitcolor import evaluate as ev  # noqa: E402
from portraitcolor.atomic import atomic_write_bytes  # noqa: E402
from portraitcolor.config import EvaluateOptions  # noqa: E402
from portraitcolor.report import png_bytes  # noqa: E402
from portraitcolor.targets import open_target  # noqa: E402

COLUMNS = ("model", "ab / gray", "ab", "CIEDE2000", "PSNR dB (gray)", "colourfulness ratio", "beats gray")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/yardstick.py", description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", help="folders or files of colour photos (never trained on)")
    parser.add_argument("-m", "--model", action="append", dest="models", help="store name or .safetensors path (repeatable; default: the default model)")
    parser.add_argument("--worst", type=int, default=8, help="photos in the worst-cases strip")
    parser.add_argument("--strip", type=Path, help="PNG of the worst cases of the last model (list the new model last)")
    parser.add_argument("--sample-strip", type=Path, help="PNG of a seeded random sample of --worst photos, for before/after pictures")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def figures(evaluation: ev.Evaluation, label: str) -> dict:
    """One model's yardstick figures from an evaluation that holds it and the gray baseline."""
    model, gray = evaluation.methods[label], evaluation.methods[ev.GRAY]
    return {
        "model": label,
        "images": evaluation.count,
        "ab": float(model["ab_mae"].mean()),
        "gray_ab": float(gray["ab_mae"].mean()),
        "ab_over_gray": float(model["ab_mae"].mean() / gray["ab_mae"].mean()),
        "ciede2000": float(model["ciede2000"].mean()),
        "psnr": float(model["psnr"].mean()),
        "gray_psnr": float(gray["psnr"].mean()),
        "colourfulness_ratio": float(np.nanmean(model["colourfulness_ratio"])),
        "beats_gray": float(np.mean(model["ab_mae"] < gray["ab_mae"])),
    }


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [r["model"], f"{r['ab_over_gray']:.3f}", f"{r['ab']:.2f} (gray {r['gray_ab']:.2f})", f"{r['ciede2000']:.2f}",
                 f"{r['psnr']:.2f} ({r['gray_psnr']:.2f})", f"{r['colourfulness_ratio']:.3f}", f"{100 * r['beats_gray']:.0f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def worst_rows(evaluation: ev.Evaluation, label: str, count: int) -> list[int]:
    """The photos where the model's ab error is highest against gray's."""
    ratio = evaluation.methods[label]["ab_mae"] / np.maximum(evaluation.methods[ev.GRAY]["ab_mae"], 1e-6)
    return [int(row) for row in np.argsort(-ratio, kind="stable")[:count]]


def sample_rows(evaluation: ev.Evaluation, count: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return sorted(int(row) for row in rng.choice(evaluation.count, size=min(count, evaluation.count), replace=False))


def render_strips(evaluation: ev.Evaluation, rows: list[int], *, targets: list[str], models: list[ev.ModelUnderTest], options: EvaluateOptions) -> dict[int, np.ndarray]:
    """Row -> strip (gray input | each model | truth), the models run again on those photos:
    each model was evaluated on its own (at its own render size), so no one evaluation holds
    them side by side."""
    target = open_target([Path(t) for t in targets], options)
    wanted = {evaluation.keys[row]: row for row in rows}
    strips = {}
    for batch, predicted in ev.method_outputs(target, models, evaluation.mean_ab, options, ev.engines_for(models, options.device), only=set(wanted)):
        predicted_rgb = ev.rgb_of(predicted)
        for i, key in enumerate(batch.keys):
            strips[wanted[key]] = ev.strip_of(batch, predicted_rgb, models, i)
    return strips


def stacked_strips(evaluation: ev.Evaluation, rows: list[int], models: list[ev.ModelUnderTest], targets: list[str], device: str) -> np.ndarray:
    """gray | each model | truth for each row, one strip under the other."""
    strips = render_strips(evaluation, rows, targets=targets, models=models, options=EvaluateOptions(device=device))
    stacked = [strips[row] for row in rows]
    gap = np.full((4, stacked[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for strip in stacked for part in (strip, gap)][:-1])


def main(argv: list[str] | None = None) -> int:
    options = _parse(argv)
    models = ev.load_models(options.models, most=None)
    rows, evaluations = [], []
    for m in models:
        # One model at a time: evaluate compares at most two, and each gets its own render size.
        result = ev.evaluate(options.photos, models=[m], options=EvaluateOptions(device=options.device))
        for source, reason in result.failures:
            print(f"{source}: {reason}", file=sys.stderr)
        rows.append(figures(result, m.label))
        evaluations.append(result)
    print(table(rows))
    print(f"\n{rows[0]['images']} photos: {', '.join(map(str, options.photos))}")
    columns = f"gray | {' | '.join(m.label for m in models)} | truth"
    if options.strip:
        # Worst cases of the last model: list the new model last, after the ones it replaces.
        picked = worst_rows(evaluations[-1], models[-1].label, options.worst)
        atomic_write_bytes(options.strip, png_bytes(stacked_strips(evaluations[0], picked, models, options.photos, options.device)))
        print(f"worst cases of {models[-1].label} ({columns}): {options.strip}", file=sys.stderr)
    if options.sample_strip:
        picked = sample_rows(evaluations[0], options.worst)
        atomic_write_bytes(options.sample_strip, png_bytes(stacked_strips(evaluations[0], picked, models, options.photos, options.device)))
        print(f"seeded random sample ({columns}): {options.sample_strip}", file=sys.stderr)
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
