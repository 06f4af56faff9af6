"""What people read of an evaluation: the metrics table (mean and median per metric and
method), the JSON document, the per-image CSV, and the HTML report: DIR/index.html with its
images beside it and the per-image CSV. The page shows the metrics table, each model's training summary and loss
curves, and strips (gray input | each model | truth) of the best, median and worst images
by the first model's ab error and of a seeded random sample. The strips come with the
evaluation (EvaluateOptions.strips): the report never runs a model.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from . import metrics, runs
from .atomic import atomic_output, atomic_write_bytes, atomic_write_text, file_identity, output_clash
from .errors import UsageError
from .evaluate import BASELINES, Evaluation
from .images import signed_exif, written_by_portraitcolor
from .targets import EvaluateError

CASES_PER_GROUP = 3
# What a report folder holds; the images of an earlier report that the new one does not use
# are removed with --overwrite, so that the folder never mixes two evaluations.
REPORT_FILES = ("index.html", "per_image.csv", "images")
# Strips were PNGs in reports of earlier versions: those are removed too.
_REPORT_IMAGES = ("strip-*.jpg", "strip-*.png", "loss-curves-*.png")
RANDOM_GROUP = "Random sample"


def pick_cases(evaluation: Evaluation, *, per_group: int = CASES_PER_GROUP, seed: int = 0) -> dict[str, list[int]]:
    """Row numbers of the best, median and worst images by the first model's ab error, and a
    seeded random sample of the others."""
    errors = evaluation.methods[evaluation.model_labels[0]]["ab_mae"]
    order = sorted(range(len(errors)), key=lambda row: (errors[row], evaluation.keys[row]))
    count = len(order)
    per_group = min(per_group, count)
    middle = max(0, (count - per_group) // 2)
    groups = {
        "Best": order[:per_group],
        "Median": order[middle : middle + per_group],
        "Worst": order[count - per_group :][::-1],
    }
    shown = {row for rows in groups.values() for row in rows}
    rest = [row for row in range(count) if row not in shown] or list(range(count))
    rng = np.random.default_rng(seed)
    groups[RANDOM_GROUP] = sorted(rng.choice(rest, size=min(per_group, len(rest)), replace=False).tolist())
    return groups


def check_outputs(*, csv_path: str | os.PathLike | None, report_dir: str | os.PathLike | None, overwrite: bool = False, inputs: list = ()) -> None:
    """Refuse the files asked for (a CSV, a report folder) that cannot be written, or would
    replace an input or each other, before any time is spent evaluating."""
    report_files = {} if report_dir is None else {f"--report's {name}": Path(report_dir) / name for name in REPORT_FILES}
    clash = output_clash({"--csv": csv_path, "--report": report_dir, **report_files}, list(inputs))
    if clash is not None:
        raise UsageError(clash)
    if csv_path is not None:
        check_csv_path(csv_path, overwrite=overwrite, made_by_report=report_dir)
    if report_dir is not None:
        check_report_dir(report_dir, overwrite=overwrite)


def write_outputs(evaluation: Evaluation, *, csv_path: str | os.PathLike | None, report_dir: str | os.PathLike | None, overwrite: bool = False) -> Path | None:
    """Write the files asked for; the report's page, if one was asked for."""
    if csv_path is not None:
        if report_dir is not None and file_identity(Path(csv_path).parent) == file_identity(report_dir):
            Path(report_dir).mkdir(parents=True, exist_ok=True)  # `--report out --csv out/m.csv`
        write_csv(evaluation, csv_path, overwrite=overwrite)
    return None if report_dir is None else write_report(evaluation, report_dir, overwrite=overwrite)


def check_report_dir(directory: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse a report folder that cannot be written, or holds an earlier report without
    --overwrite, before any time is spent evaluating."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise EvaluateError(f"{directory}: exists and is not a folder")
    earlier = [name for name in REPORT_FILES if (directory / name).exists()]
    foreign = [name for name in earlier if not _from_a_report(directory / name)]
    foreign += [f"images/{path.name}" for path in _report_images(directory) if not written_by_portraitcolor(path)]
    if foreign:  # a page, table or picture of the user's, in a folder of their own: never replaced
        raise EvaluateError(f"{directory}: its {foreign[0]} is not from a portraitcolor report and is kept; give --report a folder of its own")
    if earlier and not overwrite:
        raise EvaluateError(f"{directory}: holds an earlier report ({earlier[0]}); pass --overwrite to replace it")


# How a report's own files begin (in every version): --overwrite replaces only those.
_REPORT_FILE_STARTS = {"index.html": b"<title>portraitcolor evaluation", "per_image.csv": b"source,method,"}


def _from_a_report(path: Path) -> bool:
    """Whether a file in a report folder was written by a report. Its images/ folder is one
    (only the report's own strips and curves in it are ever removed)."""
    start = _REPORT_FILE_STARTS.get(path.name)
    if start is None:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:  # unreadable: not known to be ours, so kept
        return False
    return start in head


def write_report(
    evaluation: Evaluation,
    directory: str | os.PathLike,
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """A self-contained page: DIR/index.html with its images beside it, and DIR/per_image.csv.
    The evaluation must carry its strips (made with EvaluateOptions(strips=True)).

    Every file is written atomically and index.html last, so the page never refers to an
    image that is not there yet; an earlier report's images go only after that.
    """
    check_report_dir(directory, overwrite=overwrite)
    if len(evaluation.strips) != evaluation.count:
        raise EvaluateError("the evaluation holds no strips for a report: evaluate with strips=True")
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    groups = pick_cases(evaluation, seed=seed)
    rows = sorted({row for group in groups.values() for row in group})
    strip_files = {}
    for row in rows:
        name = f"images/strip-{evaluation.keys[row]:06d}.jpg"
        atomic_write_bytes(directory / name, evaluation.strips[row])
        strip_files[row] = name
    curves = _copy_loss_curves(evaluation.models, directory)
    write_csv(evaluation, directory / "per_image.csv", overwrite=overwrite)
    page = _report_html(evaluation, groups, strip_files, curves)
    atomic_write_text(directory / "index.html", page)
    _remove_stale_images(directory, keep={*strip_files.values(), *curves.values()})
    return directory / "index.html"


def _report_images(directory: Path) -> list[Path]:
    """The files in a report folder's images/ named as a report names its pictures."""
    return sorted(path for pattern in _REPORT_IMAGES for path in (directory / "images").glob(pattern))


def _remove_stale_images(directory: Path, *, keep: set[str]) -> None:
    # Only pictures a report wrote (signed): one of the user's that merely shares such a name
    # (an input folder used as the report's images/) is never removed.
    for path in _report_images(directory):
        if f"images/{path.name}" not in keep and written_by_portraitcolor(path):
            path.unlink(missing_ok=True)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True, exif=signed_exif(None))  # see jpeg_bytes
    return buffer.getvalue()


def _copy_loss_curves(models: list[dict], directory: Path) -> dict[str, str]:
    copied = {}
    for number, m in enumerate(models, start=1):
        source = runs.loss_curve_of(m["training"])
        if source is None:
            continue
        name = f"images/loss-curves-{number}.png"
        try:
            with atomic_output(directory / name) as temporary:
                _copy_signed(source, temporary)
        except (OSError, SyntaxError, ValueError):  # a damaged run folder costs the page its curve only
            continue
        copied[m["label"]] = name
    return copied


def _copy_signed(picture: Path, destination: Path) -> None:
    """A copy signed as portraitcolor's, like the strips (only pictures a report wrote are
    ever replaced or removed): the very bytes of a run's curve, which runs sign; a curve of a
    run made before they did is signed on the way."""
    if written_by_portraitcolor(picture):
        shutil.copyfile(picture, destination)
        return
    with Image.open(picture) as curve:
        curve.save(destination, format="PNG", exif=signed_exif(None))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1150px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; }
table.metrics { border-collapse: collapse; font-size: 14px; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
table.metrics th.model { background: #e8f0fe; } table.metrics th.baseline { background: #f3f3f3; }
.facts { font-size: 14px; } .facts dt { font-weight: bold; float: left; width: 110px; } .facts dd { margin-left: 120px; }
.strips { display: flex; flex-wrap: wrap; gap: 8px 24px; }
figure { margin: 4px 0 8px 0; } figcaption { font-size: 13px; color: #444; }
.columns { font-size: 13px; color: #444; margin-bottom: 6px; }
pre { background: #f7f7f7; padding: 8px; font-size: 12px; overflow-x: auto; }
ul.notes { font-size: 14px; }
"""


def _report_html(evaluation: Evaluation, groups, strip_files, curves) -> str:
    e = html.escape
    header, rows = summary_table(evaluation)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>portraitcolor evaluation: {e(', '.join(evaluation.model_labels))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation of {e(' vs '.join(evaluation.model_labels))}</h1>",
        '<dl class="facts">',
        f"<dt>Target</dt><dd>{e(evaluation.target)}</dd>",
        f"<dt>Split</dt><dd>{e(evaluation.split or '-')}</dd>",
        f"<dt>Images</dt><dd>{evaluation.count}" + (f" ({len(evaluation.failures)} unreadable)" if evaluation.failures else "") + "</dd>",
        f"<dt>Size</dt><dd>{'full resolution' if evaluation.size is None else f'{evaluation.size}x{evaluation.size}'}</dd>",
        "</dl>",
        f"<h2>Metrics</h2><p>{e(TABLE_LEGEND)}. The baselines keep the true L and predict ab = 0 (gray) or the training set's mean ab everywhere (mean ab).</p>",
        '<table class="metrics"><thead><tr>',
    ]
    for i, title in enumerate(header):
        kind = "" if i == 0 else (' class="model"' if title in evaluation.model_labels else ' class="baseline"')
        parts.append(f"<th{kind}>{e(title)}</th>")
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>")
    parts.append("</tbody></table>")
    if evaluation.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{e(note)}</li>" for note in evaluation.notes) + "</ul>")
    parts.append(_training_html(evaluation, curves))
    columns = " | ".join(["gray input", *evaluation.model_labels, "truth"])
    errors = evaluation.methods[evaluation.model_labels[0]]["ab_mae"]
    for title, group in groups.items():
        ranked = "" if title == RANDOM_GROUP else f" by ab error of {evaluation.model_labels[0]}"
        parts.append(f"<h2>{e(title + ranked)}</h2>")
        parts.append(f'<div class="columns">{e(columns)}</div><div class="strips">')
        for row in group:
            if row in strip_files:
                caption = f"{evaluation.sources[row]}: ab MAE {errors[row]:.2f}"
                parts.append(
                    f'<figure><img src="{e(strip_files[row])}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'
                )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _training_html(evaluation: Evaluation, curves: dict[str, str]) -> str:
    e = html.escape
    parts = []
    for summary in evaluation.models:
        label = summary["label"]
        if label not in curves and not summary["training"]:
            continue
        parts.append(f"<h2>Training of {e(label)}</h2>")
        if label in curves:
            parts.append(f'<img src="{e(curves[label])}" alt="loss curves of {e(label)}" style="max-width: 100%">')
        if summary["training"]:
            text = json.dumps({"config": summary["config"], "training": summary["training"]}, indent=2, sort_keys=True)
            parts.append(f"<pre>{e(text)}</pre>")
    return "\n".join(parts)


# ---- the table, JSON and CSV -----------------------------------------------------------


def _finite_stats(values: np.ndarray) -> dict[str, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"mean": None, "median": None}
    return {"mean": float(finite.mean()), "median": float(np.median(finite))}


def aggregate(evaluation: Evaluation) -> dict[str, dict[str, dict[str, float | None]]]:
    """method -> metric -> {"mean", "median"} (NaN values, such as undefined ratios, left out)."""
    return {
        method: {metric.name: _finite_stats(values[metric.name]) for metric in metrics.METRICS}
        for method, values in evaluation.methods.items()
    }


_BETTER_MARKS = {"lower": "\u2193", "higher": "\u2191", "closer to 1": "\u2192 1", "": ""}
TABLE_LEGEND = "mean (median) over the images; \u2193 lower is better, \u2191 higher, \u2192 1 nearest 1"


def summary_table(evaluation: Evaluation) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of text: one row per metric, one column per method, "mean (median)".

    The metric's name carries which way is better: a down arrow for lower, up for higher.
    """
    stats = aggregate(evaluation)
    header = ["metric", *evaluation.methods]
    rows = []
    for metric in metrics.METRICS:
        cells = [f"{metric.label} {_BETTER_MARKS[metric.better]}".rstrip()]
        for method in evaluation.methods:
            value = stats[method][metric.name]
            cells.append(
                "-" if value["mean"] is None else f"{value['mean']:.{metric.digits}f} ({value['median']:.{metric.digits}f})"
            )
        rows.append(cells)
    return header, rows


def json_document(evaluation: Evaluation) -> dict:
    """The aggregate as plain JSON data (no timings, so that two runs give the same text)."""
    return {
        "target": evaluation.target,
        "split": evaluation.split,
        "images": evaluation.count,
        "size": evaluation.size,
        "failed": [{"source": source, "reason": reason} for source, reason in evaluation.failures],
        "models": evaluation.models,
        "baselines": [method for method in evaluation.methods if method in BASELINES],
        "mean_ab": list(evaluation.mean_ab) if evaluation.mean_ab else None,
        "metrics": [{"name": m.name, "label": m.label, "better": m.better} for m in metrics.METRICS],
        "methods": aggregate(evaluation),
        "notes": evaluation.notes,
    }


def csv_text(evaluation: Evaluation) -> str:
    """One row per image and method: source, method, every metric (empty where undefined)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [metric.name for metric in metrics.METRICS]
    writer.writerow(["source", "method", *names])
    for method, values in evaluation.methods.items():
        for row, source in enumerate(evaluation.sources):
            writer.writerow([source, method, *(_csv_number(values[name][row]) for name in names)])
    return buffer.getvalue()


def _csv_number(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6g}"


def check_csv_path(path: str | os.PathLike, *, overwrite: bool = False, made_by_report: str | os.PathLike | None = None) -> None:
    """Refuse a CSV path that cannot be written, or would replace earlier results without
    --overwrite, before any time is spent evaluating. made_by_report: the --report folder,
    which the run makes: a CSV may go into it."""
    path = Path(path)
    if path.is_dir():
        raise EvaluateError(f"{path}: is a folder, not a CSV file name")
    if not path.parent.is_dir() and not (made_by_report is not None and file_identity(path.parent) == file_identity(made_by_report)):
        raise EvaluateError(f"{path}: its folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise EvaluateError(f"{path}: exists (pass --overwrite to replace it)")


def write_csv(evaluation: Evaluation, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    check_csv_path(path, overwrite=overwrite)
    atomic_write_text(path, csv_text(evaluation))
    return Path(path)
