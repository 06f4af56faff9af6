"""Losses: SSIM against skimage, phase sums, adversarial terms, finite gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from portraitcolor.lab import ab_to_net
from portraitcolor.losses import (
    chroma_loss,
    discriminator_loss,
    generator_adversarial_loss,
    mae_loss,
    mean_chroma,
    rebalanced_mae,
    rebalanced_mae_loss,
    reconstruction_loss,
    ssim,
    ssim_loss,
)
from portraitcolor.model import PatchDiscriminator


def skimage_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Mean SSIM over channels of one (C, H, W) image, the reference settings."""
    return float(
        np.mean(
            [
                structural_similarity(
                    x[c], y[c], data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=True
                )
                for c in range(x.shape[0])
            ]
        )
    )


@pytest.mark.parametrize(
    "shape, data_range",
    [((2, 2, 32, 32), 1.0), ((1, 1, 11, 11), 1.0), ((3, 2, 40, 24), 1.0), ((1, 3, 17, 29), 255.0)],
)
def test_ssim_matches_skimage(shape, data_range):
    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(0, data_range, shape).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1 * data_range, shape), 0, data_range).astype(np.float32)
    got = ssim(torch.from_numpy(x), torch.from_numpy(y), data_range=data_range).numpy()
    expected = [skimage_ssim(x[i].astype(np.float64), y[i].astype(np.float64), data_range) for i in range(shape[0])]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 2, 24, 24)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_reconstruction_loss_is_the_weighted_sum_of_its_terms():
    prediction, target = torch.rand(2, 2, 16, 16), torch.rand(2, 2, 16, 16)
    total = reconstruction_loss((("mae", 1.0), ("ssim", 0.1), ("gan", 1.0)), prediction, target)
    expected = mae_loss(prediction, target) + 0.1 * ssim_loss(prediction, target)
    assert torch.allclose(total, expected)


@pytest.mark.parametrize("terms", [(("mae", 1.0),), (("mse", 2.0),), (("ssim", 1.0),), (("mae", 1.0), ("ssim", 0.5))])
def test_gradients_are_finite(terms):
    prediction = torch.rand(2, 2, 16, 16, requires_grad=True)
    target = torch.rand(2, 2, 16, 16)
    reconstruction_loss(terms, prediction, target).backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    # constant images: SSIM's variances are zero, the constants keep it finite
    flat = torch.full((1, 2, 16, 16), 0.5, requires_grad=True)
    ssim_loss(flat, torch.full((1, 2, 16, 16), 0.5)).backward()
    assert torch.isfinite(flat.grad).all()


def test_patch_discriminator_shapes_and_adversarial_losses():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(width=4)
    l, ab = torch.rand(2, 1, 64, 64), torch.rand(2, 2, 64, 64, requires_grad=True)
    logits = discriminator(l, ab)
    assert logits.shape == (2, 1, 6, 6)  # 64/8 - 2, each logit sees a 70x70 patch
    loss = generator_adversarial_loss(logits) + discriminator_loss(logits.detach(), logits)
    loss.backward()
    assert torch.isfinite(ab.grad).all()
    confident = discriminator_loss(torch.full((1, 1, 2, 2), 20.0), torch.full((1, 1, 2, 2), -20.0))
    assert float(confident) < 1e-6


def test_rebalanced_mae_weights_rare_colours_up_and_keeps_a_mean_weight_of_one():
    target = torch.full((2, 2, 16, 16), 0.5)
    target[:, :, :2, :] = torch.tensor([0.8, 0.2])[:, None, None]  # a rare saturated colour: 1/8 of the pixels
    uniform = target + 0.05
    # The same error everywhere: the weights average to 1, so the loss is that error.
    assert torch.allclose(rebalanced_mae(uniform, target), torch.full((2,), 0.05), atol=1e-6)
    common_wrong, rare_wrong = target.clone(), target.clone()
    common_wrong[:, :, 2:4, :] += 0.1  # as many common pixels wrong as there are rare ones
    rare_wrong[:, :, :2, :] += 0.1
    assert torch.allclose(mae_loss(common_wrong, target), mae_loss(rare_wrong, target))
    # Two occupied bins, p = 1/8 and 7/8: weights 1 / (p / 2 + 1 / 4), a ratio of 2.2.
    ratio = float(rebalanced_mae_loss(rare_wrong, target)) / float(rebalanced_mae_loss(common_wrong, target))
    assert ratio == pytest.approx((7 / 16 + 1 / 4) / (1 / 16 + 1 / 4), rel=1e-4)


def test_rebalanced_loss_trains_through_a_schedule_phase():
    prediction = torch.rand(2, 2, 16, 16, requires_grad=True)
    target = torch.rand(2, 2, 16, 16)
    loss = reconstruction_loss((("mae", 1.0), ("rebalanced", 0.5)), prediction, target)
    loss.backward()
    assert torch.isfinite(loss) and prediction.grad is not None and torch.isfinite(prediction.grad).all()


def test_chroma_loss_measures_how_much_paler_each_picture_is_whatever_its_hues():
    neutral = torch.full((2, 2, 8, 8), float(ab_to_net(np.float32(0.0))))
    assert torch.allclose(mean_chroma(neutral), torch.zeros(2), atol=1e-3)
    # Truth: chroma 20 (CIELAB units) everywhere; a prediction as saturated in another hue costs nothing.
    truth, other_hue = neutral.clone(), neutral.clone()
    truth[:, 0] += 20 / 255
    other_hue[:, 1] -= 20 / 255
    assert float(chroma_loss(other_hue, truth)) < 1e-4
    assert float(chroma_loss(neutral, truth)) == pytest.approx(20 / 255, abs=2e-4)  # sqrt keeps 1e-4 at neutral
    # Next to MAE, the gradient pushes a too-pale prediction outwards, away from neutral.
    pale = (neutral + (truth - neutral) * 0.3).requires_grad_(True)
    reconstruction_loss((("mae", 1.0), ("chroma", 1.0)), pale, truth).backward()
    assert float(chroma_loss(pale.detach() - 0.1 * pale.grad.sign(), truth)) < float(chroma_loss(pale.detach(), truth))
    assert torch.isfinite(pale.grad).all()
