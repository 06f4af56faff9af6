"""Torch batches from a set file for training: one split of a set (setfile.py) as network
tensors, shuffled chunk by chunk, with the flips and zoom of the paper's augmentation, and
the DataLoader that reads them in worker processes."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import cv2
import h5py
import numpy as np
import torch

from . import hints as hint_rules
from .lab import ab_from_net, lab8_to_net
from .setfile import CHUNK_IMAGES, IMAGES, REPEATS, SPLIT_NAMES, SPLITS, DatasetError, inspect_set, split_bytes

# ---- the training reader ----------------------------------------------------------

# Sets smaller than this are read into memory once: random access is then free.
IN_MEMORY_BYTES = 1 << 30
# Shuffle buffer, in chunks: chunks are shuffled, then images within each window of
# this many chunks, so reads stay chunk-aligned while batches still mix many sources.
SHUFFLE_CHUNKS = 16
# Scale/crop jitter: zoom in by up to this factor, then crop back to the set's size.
MAX_ZOOM = 1.125


class LabBatches:
    """Batches of one split as network tensors, for training and validation.

    An IterableDataset that yields whole batches (use DataLoader(batch_size=None)):
    batching in numpy here avoids collating thousands of single images per second.
    Each item is (l (B, 1, S, S) float32 0..1, ab (B, 2, S, S) float32 0..1, rows (B,) int64
    file rows). Why iterable rather than map-style + sampler: reads must be chunk-aligned
    to be fast (lzf chunks of CHUNK_IMAGES images), which a per-index sampler cannot express.

    The epoch's order depends only on (seed, epoch): the global batch sequence is the same
    for any number of loader workers or ranks. Worker w of W produces global batches
    w, w+W, ... (the DataLoader takes them round-robin, restoring the order), and rank r
    of R keeps rows [r*B/R, (r+1)*B/R) of every global batch, as DistributedSampler does
    for single images. So the ranks together see exactly what one process would.
    The HDF5 file is opened on first use inside each worker, never before a fork.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool | None = None,
        augment: bool = True,
        drop_last: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
        in_memory: bool | None = None,
    ) -> None:
        info = inspect_set(path)  # a set with the wrong layout is refused before training
        if split not in SPLIT_NAMES:
            raise DatasetError(f"unknown split {split!r} (use one of {', '.join(SPLIT_NAMES)})")
        if batch_size < 1 or batch_size % world_size:
            raise DatasetError(f"batch size {batch_size} must be a positive multiple of the {world_size} processes")
        training = split == "train"
        self.path = Path(path)
        self.split = split
        self.size = info.size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = training if shuffle is None else shuffle
        self.augment = augment and training  # never distort what we measure against
        self.drop_last = training if drop_last is None else drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start_batch = 0
        self.in_memory = split_bytes(info, split) <= IN_MEMORY_BYTES if in_memory is None else in_memory
        with h5py.File(self.path, "r") as handle:
            codes = handle[SPLITS][...]
            self.chunk = (handle[IMAGES].chunks or (CHUNK_IMAGES,))[0]
            self.rows = np.flatnonzero(codes == SPLIT_NAMES.index(split)).astype(np.int64)
            # Training draws an image as many times per epoch as the set says; validation once.
            repeats = handle[REPEATS][...][self.rows] if training and REPEATS in handle else np.ones(len(self.rows), np.int64)
            self.draws = np.repeat(np.arange(len(self.rows)), np.maximum(repeats.astype(np.int64), 1))
            # A plain array (not an open handle) is safe to share with forked workers.
            self._memory = handle[IMAGES][...][self.rows] if self.in_memory and len(self.rows) else None
        if self.drop_last and len(self.rows) < batch_size:
            raise DatasetError(f"{self.path}: the {split} split has {len(self.rows)} images, fewer than one batch of {batch_size}")
        self._handle = None
        self._cache: dict = {}

    def __len__(self) -> int:
        """Batches per epoch (global batches, hence also per rank)."""
        whole, rest = divmod(len(self.draws), self.batch_size)
        return whole + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch: int, *, start_batch: int = 0) -> None:
        """Reshuffle for `epoch`; skip its first `start_batch` batches (resuming mid-epoch)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def epoch_order(self):
        """Positions into self.rows in this epoch's order (before batching and sharding);
        an image with repeats appears that many times."""
        if not self.shuffle:
            return self.draws
        rng = np.random.default_rng([self.seed, self.epoch, 0])
        if self.in_memory:
            return rng.permutation(self.draws)
        chunk_of = self.rows[self.draws] // self.chunk
        starts = np.flatnonzero(np.r_[True, chunk_of[1:] != chunk_of[:-1]])
        groups = np.split(self.draws, starts[1:])
        groups = [groups[i] for i in rng.permutation(len(groups))]
        windows = [np.concatenate(groups[i : i + SHUFFLE_CHUNKS]) for i in range(0, len(groups), SHUFFLE_CHUNKS)]
        return np.concatenate([rng.permutation(window) for window in windows])

    def __iter__(self):
        order = self.epoch_order()
        worker = torch.utils.data.get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        share = self.batch_size // self.world_size
        for index in range(self.start_batch, len(self)):
            if index % workers != worker_id:
                continue
            positions = order[index * self.batch_size : (index + 1) * self.batch_size]
            positions = positions[self.rank * share : (self.rank + 1) * share]
            yield self._batch(index, positions)

    def _batch(self, index: int, positions):
        lab8 = self._read(positions)  # (B, S, S, 3) uint8
        if self.augment:
            lab8 = self._jitter(lab8, index)
        l, ab = lab8_to_net(lab8)  # (B, S, S, 1), (B, S, S, 2) in 0..1
        l = torch.from_numpy(np.ascontiguousarray(l.transpose(0, 3, 1, 2)))
        ab = torch.from_numpy(np.ascontiguousarray(ab.transpose(0, 3, 1, 2)))
        return l, ab, torch.from_numpy(self.rows[positions])

    def _read(self, positions):
        if self._memory is not None:
            return self._memory[positions]
        rows = self.rows[positions]
        out = np.empty((len(rows), self.size, self.size, 3), np.uint8)
        for chunk in np.unique(rows // self.chunk):
            block = self._chunk_block(int(chunk))
            inside = rows // self.chunk == chunk
            out[inside] = block[rows[inside] - chunk * self.chunk]
        return out

    def _chunk_block(self, chunk: int):
        """One whole chunk (decompressed once), kept while the shuffle window needs it."""
        if chunk not in self._cache:
            if self._handle is None:  # first read in this process: open here, after any fork
                self._handle = h5py.File(self.path, "r")
            if len(self._cache) >= 2 * SHUFFLE_CHUNKS:
                self._cache.pop(next(iter(self._cache)))
            images = self._handle[IMAGES]
            self._cache[chunk] = images[chunk * self.chunk : (chunk + 1) * self.chunk]
        return self._cache[chunk]

    def _jitter(self, lab8, index: int):
        """Horizontal flip and a small zoom-and-crop, the same for L and ab of an image.

        The draws are made for the whole global batch and each rank takes its share, so
        the images are jittered the same way however many processes train.
        """
        rng = np.random.default_rng([self.seed, self.epoch, 1, index])
        size, count = self.size, self.batch_size
        flips = rng.random(count) < 0.5
        zoomed_sizes = np.rint(size * rng.uniform(1.0, MAX_ZOOM, count)).astype(int)
        offsets = rng.random((count, 2))
        first = self.rank * (count // self.world_size)
        out = np.empty_like(lab8)
        for i, image in enumerate(lab8):
            k = first + i
            if flips[k]:
                image = image[:, ::-1]
            zoomed = zoomed_sizes[k]
            if zoomed > size:
                image = cv2.resize(np.ascontiguousarray(image), (zoomed, zoomed), interpolation=cv2.INTER_LINEAR)
                top, left = (offsets[k] * (zoomed - size + 1)).astype(int)
                image = image[top : top + size, left : left + size]
            out[i] = image
        return out

    def __getstate__(self):
        # Workers started by spawn get a copy without the (unpicklable) open file.
        state = dict(self.__dict__)
        state["_handle"] = None
        state["_cache"] = {}
        return state


def loader(batches: LabBatches, *, workers: int = 0, pin_memory: bool = False):
    """A DataLoader over a LabBatches (already batched), with `workers` reader processes."""
    return torch.utils.data.DataLoader(
        TorchBatches(batches),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
    )


def default_workers(device, world_size: int) -> int:
    """Reader processes for each rank's training loader."""
    # On a CPU the reader would compete with the training step for the same cores.
    if device.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // world_size - 1))


class TorchBatches(torch.utils.data.IterableDataset):
    """LabBatches seen by DataLoader as an IterableDataset."""

    def __init__(self, batches: LabBatches) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def with_sampled_hints(l, ab):
    """(b, 1, S, S) L and (b, 2, S, S) true ab (0..1) -> (b, 1 + HINT_CHANNELS, S, S): L and
    hints sampled from the truth (hints.py): none for NO_HINT_SHARE of the images, else a
    geometric number of square patches, each holding the patch's mean true colour."""
    batch, _, height, width = l.shape
    patches = sampled_hint_patches(batch, height, width)
    return torch.cat([l, painted_hints(ab.detach(), patches).to(l.dtype)], dim=1)


class HintPatches(NamedTuple):
    """Square patches of training hints, MAX_TRAINING_POINTS slots per image, each (b, slots):
    `active` marks the slots in use (a slot paints over the ones before it), `side`, `top` and
    `left` place them (unused slots hold valid places too)."""

    active: torch.Tensor
    side: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor


def sampled_hint_patches(batch: int, height: int, width: int) -> HintPatches:
    """Draw the patches of a batch at once, from torch's global generator (seeded by train, saved
    in its checkpoints): one draw per kind for the whole batch, not a Python loop per patch."""
    slots = hint_rules.MAX_TRAINING_POINTS
    hinted = torch.rand(batch) >= hint_rules.NO_HINT_SHARE
    # A geometric count of patches (failures before the first success, plus one), by inversion.
    success = 1.0 / hint_rules.MEAN_TRAINING_POINTS
    failures = torch.floor(torch.log1p(-torch.rand(batch)) / math.log1p(-success))
    counts = torch.clamp(failures + 1, max=slots) * hinted
    side = torch.randint(1, hint_rules.MAX_TRAINING_PATCH + 1, (batch, slots))
    top = (torch.rand(batch, slots) * (height - side + 1)).long().clamp(max=height - side)
    left = (torch.rand(batch, slots) * (width - side + 1)).long().clamp(max=width - side)
    return HintPatches(torch.arange(slots)[None] < counts[:, None], side, top, left)


def painted_hints(ab, patches: HintPatches):
    """(b, 2, H, W) true ab (the network's 0..1) and the patches -> (b, HINT_CHANNELS, H, W): each
    patch's mean true colour over its pixels (CIELAB / AB_SCALE) and the mask, a later slot
    painting over an earlier one.
    Vectorised over the patches' pixels (at most MAX_TRAINING_PATCH^2 each), the work of a few
    thousand pixels, not of the images: the painter of each pixel is the highest slot covering
    it (a scatter of maxima)."""
    batch, _, height, width = ab.shape
    device, slots = ab.device, patches.active.shape[1]
    offsets = torch.arange(hint_rules.MAX_TRAINING_PATCH)
    dy = offsets.repeat_interleave(len(offsets))
    dx = offsets.repeat(len(offsets))
    side = patches.side[..., None]
    covered = patches.active[..., None] & (dy < side) & (dx < side)  # (b, slots, patch pixels)
    image, slot, pixel = covered.nonzero(as_tuple=True)
    rows = patches.top[image, slot] + dy[pixel]
    cols = patches.left[image, slot] + dx[pixel]
    image, slot, rows, cols = (index.to(device) for index in (image, slot, rows, cols))
    patch = image * slots + slot
    true_ab = ab_from_net(ab[image, :, rows, cols].float()) / hint_rules.AB_SCALE  # only the covered pixels
    sums = true_ab.new_zeros(batch * slots, 2).index_add_(0, patch, true_ab)
    means = sums / patches.side.to(device).reshape(-1, 1).float() ** 2
    painter = torch.full((batch * height * width,), -1, dtype=torch.long, device=device)
    where = (image * height + rows) * width + cols
    painter.scatter_reduce_(0, where, patch, reduce="amax")
    wins = painter[where] == patch  # each covered pixel once, by its highest slot
    image, rows, cols, patch = image[wins], rows[wins], cols[wins], patch[wins]
    hints = true_ab.new_zeros(batch, hint_rules.HINT_CHANNELS, height, width)
    hints[image, :2, rows, cols] = means[patch]
    hints[image, 2, rows, cols] = 1.0
    return hints
