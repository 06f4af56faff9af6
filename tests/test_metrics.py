"""Each metric against its reference: skimage for PSNR, SSIM and CIEDE2000, the paper's
formula written out plainly for colourfulness."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from portraitcolor import metrics
from portraitcolor.lab import lab_to_rgb, rgb_to_lab
from tests.conftest import portrait_array


def _pair(seed: int, size: int, noise: float):
    """A true portrait (0..1 RGB) and a perturbed 'prediction' of it, float32."""
    rng = np.random.default_rng(seed)
    truth = portrait_array(size, size, seed=seed).astype(np.float32) / 255
    prediction = np.clip(truth + rng.normal(0, noise, truth.shape), 0, 1).astype(np.float32)
    return prediction, truth


CASES = [(0, 32, 0.02), (1, 48, 0.1), (2, 64, 0.3)]


@pytest.mark.parametrize("seed,size,noise", CASES)
def test_psnr_matches_skimage(seed, size, noise):
    prediction, truth = _pair(seed, size, noise)
    expected = peak_signal_noise_ratio(truth.astype(np.float64), prediction.astype(np.float64), data_range=1)
    assert metrics.psnr(prediction[None], truth[None])[0] == pytest.approx(expected, abs=1e-9)


def test_psnr_of_identical_images_is_capped():
    _, truth = _pair(0, 32, 0.0)
    assert metrics.psnr(truth[None], truth[None])[0] == metrics.PSNR_MAX_DB


@pytest.mark.parametrize("seed,size,noise", CASES)
def test_ssim_matches_skimage_on_rgb(seed, size, noise):
    prediction, truth = _pair(seed, size, noise)
    expected = structural_similarity(
        truth.astype(np.float64), prediction.astype(np.float64),
        channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=True, data_range=1,
    )
    assert metrics.ssim(prediction[None], truth[None])[0] == pytest.approx(expected, abs=1e-5)


def test_metrics_are_per_image_on_a_batch():
    pairs = [_pair(seed, 32, noise) for seed, _, noise in CASES]
    predictions = np.stack([p for p, _ in pairs])
    truths = np.stack([t for _, t in pairs])
    for function in (metrics.psnr, metrics.ssim):
        batch = function(predictions, truths)
        singles = [function(p[None], t[None])[0] for p, t in pairs]
        assert batch.shape == (3,) and batch.dtype == np.float64
        np.testing.assert_allclose(batch, singles, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ciede2000_matches_skimage(seed):
    rng = np.random.default_rng(seed)
    lab1 = np.stack([rng.uniform(0, 100, (4, 16, 16)), rng.uniform(-100, 100, (4, 16, 16)), rng.uniform(-100, 100, (4, 16, 16))], -1)
    lab2 = lab1 + rng.normal(0, [3, 20, 20], lab1.shape)
    lab2[0, :4] = lab1[0, :4] * [1, 0, 0]  # achromatic predictions (the gray baseline)
    lab2[1, :4] = lab1[1, :4]  # identical colours
    expected = deltaE_ciede2000(lab1, lab2)
    np.testing.assert_allclose(metrics.ciede2000_pixels(lab1, lab2), expected, atol=1e-9)
    np.testing.assert_allclose(metrics.ciede2000(lab1, lab2), expected.reshape(4, -1).mean(1), atol=1e-9)


@pytest.mark.parametrize(
    "lab1,lab2,expected",
    [  # rows 1, 7 and 17 of Sharma, Wu & Dalal's (2005) published test data
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ],
)
def test_ciede2000_sharma_reference_pairs(lab1, lab2, expected):
    assert metrics.ciede2000_pixels(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)


def _colourfulness_reference(rgb01: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003), eq. for M_3, written out for one image."""
    r, g, b = (rgb01[..., i].astype(np.float64).ravel() * 255 for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.sqrt(np.std(rg) ** 2 + np.std(yb) ** 2) + 0.3 * np.sqrt(np.mean(rg) ** 2 + np.mean(yb) ** 2))


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_colourfulness_matches_the_paper_formula(seed):
    _, truth = _pair(seed, 40, 0.0)
    assert metrics.colourfulness(truth[None])[0] == pytest.approx(_colourfulness_reference(truth), rel=1e-9)


@pytest.mark.parametrize(
    "colour,expected",
    [((0.5, 0.5, 0.5), 0.0), ((1.0, 0.0, 0.0), 0.3 * np.hypot(255, 127.5)), ((0.0, 0.0, 1.0), 0.3 * 255)],
)
def test_colourfulness_of_flat_colours(colour, expected):
    image = np.broadcast_to(np.array(colour, np.float32), (1, 8, 8, 3))
    assert metrics.colourfulness(image)[0] == pytest.approx(expected, abs=1e-6)


def test_colourfulness_ratio_is_undefined_for_gray_truth():
    ratio = metrics.colourfulness_ratio(np.array([10.0, 5.0]), np.array([20.0, 0.0]))
    assert ratio[0] == pytest.approx(0.5) and np.isnan(ratio[1])


def test_ab_mae_of_gray_is_mean_absolute_ab():
    _, truth = _pair(4, 32, 0.0)
    lab = rgb_to_lab(truth)[None]
    gray = lab.copy()
    gray[..., 1:] = 0
    assert metrics.ab_mae(gray[..., 1:], lab[..., 1:])[0] == pytest.approx(np.abs(lab[..., 1:]).mean(), rel=1e-6)


def test_image_metrics_of_a_perfect_prediction():
    _, truth = _pair(5, 32, 0.0)
    lab = rgb_to_lab(truth)[None]
    rgb = lab_to_rgb(lab)
    values = metrics.image_metrics(predicted_lab=lab, true_lab=lab, predicted_rgb=rgb, true_rgb=rgb)
    assert {m.name for m in metrics.METRICS} == set(values)
    assert values["ab_mae"][0] == 0 and values["ciede2000"][0] == 0
    assert values["ssim"][0] == pytest.approx(1.0, abs=1e-6)
    assert values["colourfulness_ratio"][0] == pytest.approx(1.0)
