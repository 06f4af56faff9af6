"""The jobs' options as typed dataclasses: every default lives here, once.

The core takes these (prepare, train, evaluate) and the CLI reads its defaults from them,
so an option's default is written in one place. Nothing heavy is imported: `--help` reads
this module.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import UsageError

# A photo larger than this is far beyond any camera and is almost certainly a decompression
# bomb (a tiny file that claims gigapixels): refused before decoding.
DEFAULT_MAX_PIXELS = 100_000_000
# Room around a detected face box, as a fraction of its side, on each side: Haar boxes are
# tight on the eyes-to-mouth region; portraits want hair and chin too.
DEFAULT_FACE_MARGIN = 0.6
# prepare's values for a new set (with --append, the existing set's own).
DEFAULT_SIZE = 128
DEFAULT_VAL = 0.05
DEFAULT_TEST = 0.05
# train's epochs when no phase of --loss gives its own count.
DEFAULT_EPOCHS = 20
# The compute device: a GPU where one is present (see device.py).
DEFAULT_DEVICE = "auto"


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that decides which images are kept and how they are stored.

    None for size, val and test means: the existing set's value with --append, else the default.
    A threshold of 0 turns its filter off.
    """

    size: int | None = None
    crop: str = "center"
    face_margin: float = DEFAULT_FACE_MARGIN
    min_size: int = 64
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_contrast: float = 2.0
    min_detail: float = 3.0
    min_colorfulness: float = 2.0
    require_face: bool = False
    dedupe: bool = False
    dedupe_distance: int = 4
    imdb_meta: bool = False
    min_face_score: float = 1.0
    val: float | None = None
    test: float | None = None
    limit: int | None = None
    backgrounds: str | None = None  # folder of scene photos for composites of cut-outs
    composites: int = 4  # composites per cut-out, with backgrounds
    crops_per_image: int = 4  # with crop "random"
    seed: int = 0  # the draws of composites and random crops
    repeat: int = 1  # times each image is drawn per training epoch (stored per image)

    def __post_init__(self) -> None:
        if (self.val or 0.0) + (self.test or 0.0) >= 1.0:
            raise UsageError("--val and --test must add up to less than 1")


@dataclass
class TrainConfig:
    data: str = ""
    epochs: int | None = None
    loss: str = "mae,ssim"
    switch_on_plateau: int | None = None
    lr: float = 1e-3
    lr_decay: str = "none"
    batch_size: int = 32
    width: int = 64
    hints: bool = False  # a hint-aware network, trained with hints sampled from the truth
    init: str | None = None  # start from this model's weights (store name or path): fine-tuning
    seed: int = 0
    device: str = DEFAULT_DEVICE
    compile: bool = False
    patience: int | None = None
    run_dir: str | None = None
    resume: str | None = None
    name: str | None = None
    set_default: bool = False
    in_memory: bool | None = None
    workers: int | None = None
    replace: bool = False  # --name may replace a model of that name in the store
    overwrite: bool = False  # --run-dir may hold an earlier run's files
    # The set's size, mtime and sha256, taken at the start: --resume checks it is the same file.
    data_fingerprint: dict | None = None

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass(frozen=True)
class EvaluateOptions:
    split: str | None = "test"  # None: every image of the set
    full_res: bool = False
    batch_size: int = 32
    device: str = DEFAULT_DEVICE
    limit: int | None = None
    hints: int = 0  # hints per image for hint-aware models, sampled from the truth (seeded by image)
    strips: bool = False  # keep each image's strip (gray | models | truth) for a report
    leave_out: tuple[str, ...] = ()  # folders not searched for photos: the run's own --report folder


@dataclass(frozen=True)
class ColorizeOptions:
    """colorize's defaults (the pipeline takes them as keyword arguments)."""

    batch_size: int = 8
    max_pixels: int = DEFAULT_MAX_PIXELS
