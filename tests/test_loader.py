"""The training reader: shapes, ranges, deterministic shuffling, augmentation, sharding, workers;
the hints sampled for training."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from portraitcolor import hints as hint_rules
from portraitcolor import setfile
from portraitcolor.lab import ab_from_net, lab8_to_net
from portraitcolor.loader import LabBatches, loader, painted_hints, sampled_hint_patches, with_sampled_hints
from portraitcolor.setfile import DatasetError
from tests.conftest import portrait_stack, write_set

SIZE = 16


@pytest.fixture
def small_set(tmp_path):
    """40 images: 32 train, 8 val, chunks of 8 so that block shuffling has blocks to move."""
    splits = ["val" if i % 5 == 0 else "train" for i in range(40)]
    return write_set(tmp_path / "set.h5", portrait_stack(40, SIZE), splits, chunk=8)


def collect(batches):
    return [(l.clone(), ab.clone(), rows.clone()) for l, ab, rows in batches]


@pytest.mark.parametrize("in_memory", [True, False])
def test_batches_have_the_network_shapes_and_ranges(small_set, in_memory):
    batches = LabBatches(small_set, "train", batch_size=8, in_memory=in_memory)
    items = collect(batches)
    assert len(items) == len(batches) == 4
    for l, ab, rows in items:
        assert l.shape == (8, 1, SIZE, SIZE) and ab.shape == (8, 2, SIZE, SIZE)
        assert l.dtype == ab.dtype == torch.float32 and rows.dtype == torch.int64
        assert 0.0 <= float(l.min()) and float(l.max()) <= 1.0
        assert 0.0 <= float(ab.min()) and float(ab.max()) <= 1.0


def test_order_is_deterministic_per_seed_and_epoch(small_set):
    def rows_of(seed, epoch, in_memory=False):
        batches = LabBatches(small_set, "train", batch_size=8, seed=seed, in_memory=in_memory)
        batches.set_epoch(epoch)
        return torch.cat([rows for _, _, rows in batches]).tolist()

    assert rows_of(1, 0) == rows_of(1, 0)
    assert rows_of(1, 0) != rows_of(1, 1)  # set_epoch reshuffles
    assert rows_of(1, 0) != rows_of(2, 0)
    assert sorted(rows_of(1, 3)) == sorted(rows_of(1, 4))  # same images, another order
    assert rows_of(1, 0, in_memory=True) == rows_of(1, 0, in_memory=True)


def test_validation_split_is_unshuffled_and_unaugmented(small_set):
    with h5py.File(small_set) as handle:
        stored = handle[setfile.IMAGES][...]
    batches = LabBatches(small_set, "val", batch_size=3)
    l, ab, rows = (torch.cat(parts) for parts in zip(*collect(batches)))
    assert rows.tolist() == list(range(0, 40, 5))  # file order, every image, no drop_last
    expected_l, expected_ab = lab8_to_net(stored[rows.numpy()])
    assert torch.equal(l, torch.from_numpy(expected_l).permute(0, 3, 1, 2))
    assert torch.equal(ab, torch.from_numpy(expected_ab).permute(0, 3, 1, 2))


def test_augmentation_only_changes_train_images(small_set):
    with h5py.File(small_set) as handle:
        stored = handle[setfile.IMAGES][...]
    plain = LabBatches(small_set, "train", batch_size=32, augment=False)
    jittered = LabBatches(small_set, "train", batch_size=32)
    (l0, _, rows0), = collect(plain)
    (l1, _, rows1), = collect(jittered)
    assert torch.equal(rows0, rows1)
    expected = torch.from_numpy(lab8_to_net(stored[rows0.numpy()])[0]).permute(0, 3, 1, 2)
    assert torch.equal(l0, expected)
    changed = [not torch.equal(l1[i], l0[i]) for i in range(32)]
    assert sum(changed) > 16  # flips and zooms hit most images
    again, = collect(LabBatches(small_set, "train", batch_size=32))
    assert torch.equal(again[0], l1)  # augmentation is seeded too


def test_ranks_together_cover_each_image_once_and_match_one_process(small_set):
    single = LabBatches(small_set, "train", batch_size=8, seed=3)
    single.set_epoch(2)
    whole = collect(single)
    shards = []
    for rank in range(2):
        part = LabBatches(small_set, "train", batch_size=8, seed=3, rank=rank, world_size=2)
        part.set_epoch(2)
        shards.append(collect(part))
    seen = []
    for step, (l, _, rows) in enumerate(whole):
        joined_rows = torch.cat([shards[0][step][2], shards[1][step][2]])
        joined_l = torch.cat([shards[0][step][0], shards[1][step][0]])
        assert torch.equal(joined_rows, rows) and torch.equal(joined_l, l)
        seen += joined_rows.tolist()
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 32


def test_worker_processes_give_the_same_batches_in_the_same_order(small_set):
    batches = LabBatches(small_set, "train", batch_size=8, seed=5, in_memory=False)
    batches.set_epoch(1)
    expected = collect(batches)
    got = collect(loader(batches, workers=2))
    assert len(got) == len(expected)
    for (l0, ab0, r0), (l1, ab1, r1) in zip(expected, got):
        assert torch.equal(r0, r1) and torch.equal(l0, l1) and torch.equal(ab0, ab1)


def test_resuming_mid_epoch_skips_the_batches_already_seen(small_set):
    batches = LabBatches(small_set, "train", batch_size=8, seed=5)
    batches.set_epoch(4)
    whole = collect(batches)
    batches.set_epoch(4, start_batch=3)
    rest = collect(batches)
    assert len(rest) == 1 and torch.equal(rest[0][2], whole[3][2])


def test_bad_sets_and_requests_are_refused(tmp_path, small_set):
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as handle:
        handle.create_dataset("images", data=np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(DatasetError, match="not a portraitcolor set: an HDF5 file that prepare did not make .make one with: portraitcolor prepare"):
        LabBatches(broken, "train", batch_size=1)
    with pytest.raises(DatasetError, match="fewer than one batch"):
        LabBatches(small_set, "train", batch_size=64)
    with pytest.raises(DatasetError, match="multiple"):
        LabBatches(small_set, "train", batch_size=5, world_size=2)
    with pytest.raises(DatasetError, match="unknown split"):
        LabBatches(small_set, "holdout", batch_size=1)


# ---- hints sampled for training ----------------------------------------------------------


def reference_hints(ab, patches):
    """The painting rule in its plainest form: patch after patch, each filled with its mean true
    colour (over its own pixels) and painting over the ones before it."""
    batch, _, height, width = ab.shape
    out = torch.zeros(batch, hint_rules.HINT_CHANNELS, height, width)
    true_ab = ab_from_net(ab) / hint_rules.AB_SCALE
    for image in range(batch):
        for slot in range(patches.active.shape[1]):
            if not patches.active[image, slot]:
                continue
            side, top, left = (int(v[image, slot]) for v in (patches.side, patches.top, patches.left))
            rows, cols = slice(top, top + side), slice(left, left + side)
            out[image, :2, rows, cols] = true_ab[image, :, rows, cols].mean(dim=(1, 2))[:, None, None]
            out[image, 2, rows, cols] = 1.0
    return out


def test_painted_hints_match_patch_after_patch_painting_where_patches_overlap():
    torch.manual_seed(3)
    ab = torch.rand(12, 2, 12, 10)  # a small picture: many patches overlap
    patches = sampled_hint_patches(12, 12, 10)
    patches.active[0] = False  # one picture without hints
    patches.active[1] = True  # one with every slot painted, most of them over others
    painted = painted_hints(ab, patches)
    assert torch.allclose(painted, reference_hints(ab, patches), atol=1e-6)
    assert not painted[0].any()
    assert set(painted[:, 2].unique().tolist()) == {0.0, 1.0}
    unhinted = (painted[:, 2:] == 0).expand(-1, 2, -1, -1)
    assert not painted[:, :2][unhinted].any()  # colour only where the mask says a hint is


def test_sampled_hint_patches_follow_the_rules_of_hints_py():
    torch.manual_seed(0)
    patches = sampled_hint_patches(20000, 16, 12)
    counts = patches.active.sum(dim=1).float()
    assert abs((counts == 0).float().mean().item() - hint_rules.NO_HINT_SHARE) < 0.02
    assert abs(counts[counts > 0].mean().item() - hint_rules.MEAN_TRAINING_POINTS) < 0.3
    assert counts.max() <= hint_rules.MAX_TRAINING_POINTS
    # active slots come first, so "a later slot paints over an earlier one" means drawn later
    assert torch.equal(patches.active, torch.arange(patches.active.shape[1])[None] < counts[:, None])
    assert set(patches.side.unique().tolist()) == set(range(1, hint_rules.MAX_TRAINING_PATCH + 1))
    assert (patches.top >= 0).all() and (patches.top + patches.side <= 16).all()
    assert (patches.left >= 0).all() and (patches.left + patches.side <= 12).all()
    assert patches.top.max() == 16 - 1 and patches.left.max() == 12 - 1  # every place can be drawn


def test_training_inputs_with_hints_keep_l_and_repeat_for_a_seed():
    l, ab = torch.rand(8, 1, SIZE, SIZE), torch.rand(8, 2, SIZE, SIZE)
    torch.manual_seed(5)
    first = with_sampled_hints(l, ab)
    torch.manual_seed(5)
    again = with_sampled_hints(l, ab)
    assert first.shape == (8, 1 + hint_rules.HINT_CHANNELS, SIZE, SIZE) and first.dtype == l.dtype
    assert torch.equal(first, again)
    assert torch.equal(first[:, :1], l)
