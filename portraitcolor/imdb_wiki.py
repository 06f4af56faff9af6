"""IMDB-WIKI's metadata for prepare --imdb-meta: which images of an imdb_crop or wiki_crop
folder show exactly one clear face, read from the imdb.mat / wiki.mat beside them (needs scipy).
"""

from __future__ import annotations

import os

import numpy as np

from .config import PrepareOptions
from .prepare import PrepareError, Source


def load_imdb_meta(mat_path: str | os.PathLike, *, min_face_score: float) -> dict[str, bool]:
    """Map each full_path of an imdb.mat / wiki.mat to whether it shows exactly one clear face.

    As the dataset's authors advise: face_score finite and at least min_face_score
    (-inf means no face was found) and second_face_score NaN (no second face).
    """
    try:
        from scipy.io import loadmat
    except ImportError:
        raise PrepareError("--imdb-meta needs scipy: pip install 'portraitcolor[imdb]'") from None
    try:
        mat = loadmat(mat_path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, TypeError) as error:
        raise PrepareError(f"{mat_path}: cannot read IMDB-WIKI metadata ({error})") from None
    keys = [key for key in mat if not key.startswith("__")]
    if not keys:
        raise PrepareError(f"{mat_path}: no metadata struct in the file")
    table = mat[keys[0]]
    try:
        paths = np.atleast_1d(table.full_path)
        first = np.atleast_1d(table.face_score).astype(np.float64)
        second = np.atleast_1d(table.second_face_score).astype(np.float64)
    except AttributeError as error:
        raise PrepareError(f"{mat_path}: not an IMDB-WIKI metadata file ({error})") from None
    clear = np.isfinite(first) & (first >= min_face_score) & np.isnan(second)
    return {str(path): bool(ok) for path, ok in zip(paths, clear)}


def imdb_verdicts(sources: list[Source], options: PrepareOptions) -> dict[str, bool]:
    """Face verdicts for the folder sources, from the imdb.mat / wiki.mat in each folder."""
    verdicts: dict[str, bool] = {}
    for root in dict.fromkeys(source.root for source in sources if source.root is not None):
        candidates = [root / "imdb.mat", root / "wiki.mat"]
        mat = next((candidate for candidate in candidates if candidate.is_file()), None)
        if mat is None:
            raise PrepareError(f"--imdb-meta: no imdb.mat or wiki.mat in {root}")
        verdicts.update(load_imdb_meta(mat, min_face_score=options.min_face_score))
    if not verdicts:
        raise PrepareError("--imdb-meta needs a folder source (an imdb_crop or wiki_crop folder)")
    return verdicts
