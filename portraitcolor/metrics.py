"""Per-image quality metrics of a colorization against the true colour image.

Every function takes a batch as numpy arrays of shape (B, H, W, C) (float32 or float64)
and returns one float64 value per image, shape (B,). Arithmetic is float64 except SSIM,
which is losses.ssim (float32 torch, the same SSIM that training optimises).

    ab_mae          mean |a - a'| and |b - b'| over pixels, CIELAB units      lower is better
    psnr            on the RGB result in 0..1, dB                             higher is better
    ssim            on the RGB result in 0..1 (Gaussian window, sigma 1.5)    higher is better
    ciede2000       mean CIEDE2000 colour difference over pixels              lower is better
    colourfulness   Hasler & Suesstrunk (2003) on the 0..255 RGB image        closer to the truth
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# PSNR of identical images is infinite; cap it (an MSE floor of 1e-10 is 100 dB) so that
# means, medians and JSON stay finite.
PSNR_MAX_DB = 100.0
# Below this the truth has practically no colour (Hasler & Suesstrunk call < 15 "not
# colourful"); a ratio against it would be noise, so it is left undefined (NaN).
MIN_COLOURFULNESS_FOR_RATIO = 1.0


@dataclass(frozen=True)
class Metric:
    name: str  # key in JSON and CSV
    label: str  # for tables
    better: str  # "lower", "higher" or "closer to 1" (or "" for a reference value)
    digits: int


METRICS = (
    Metric("ab_mae", "ab MAE", "lower", 2),
    Metric("psnr", "PSNR dB", "higher", 2),
    Metric("ssim", "SSIM", "higher", 3),
    Metric("ciede2000", "CIEDE2000", "lower", 2),
    Metric("colourfulness", "colourfulness", "", 1),
    Metric("colourfulness_truth", "truth colourfulness", "", 1),
    Metric("colourfulness_ratio", "colourfulness ratio", "closer to 1", 3),
)


def ab_mae(predicted_ab: np.ndarray, true_ab: np.ndarray) -> np.ndarray:
    """(B, H, W, 2) x2 in CIELAB units -> (B,) mean absolute error over pixels and both channels."""
    difference = np.abs(predicted_ab.astype(np.float64) - true_ab.astype(np.float64))
    return difference.reshape(len(difference), -1).mean(axis=1)


def psnr(predicted_rgb: np.ndarray, true_rgb: np.ndarray, *, data_range: float = 1.0) -> np.ndarray:
    """(B, H, W, 3) x2 -> (B,) peak signal-to-noise ratio in dB, capped at PSNR_MAX_DB."""
    difference = predicted_rgb.astype(np.float64) - true_rgb.astype(np.float64)
    mse = (difference**2).reshape(len(difference), -1).mean(axis=1)
    floor = data_range**2 / 10 ** (PSNR_MAX_DB / 10)
    return 10.0 * np.log10(data_range**2 / np.maximum(mse, floor))


def ssim(predicted_rgb: np.ndarray, true_rgb: np.ndarray, *, device=None) -> np.ndarray:
    """(B, H, W, 3) x2 in 0..1 -> (B,) mean SSIM over pixels and channels (sides >= 11).

    device: a torch device to compute on (its 11x11 windows are most of the metrics' cost).
    """
    import torch

    from .losses import ssim as ssim_nchw

    def to_nchw(images: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        return tensor.to(device or "cpu").permute(0, 3, 1, 2)

    with torch.inference_mode():
        values = ssim_nchw(to_nchw(predicted_rgb), to_nchw(true_rgb), data_range=1.0)
    return values.cpu().numpy().astype(np.float64)


def ciede2000(predicted_lab: np.ndarray, true_lab: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) x2 CIELAB -> (B,) mean CIEDE2000 difference over the pixels."""
    differences = ciede2000_pixels(predicted_lab, true_lab)
    return differences.reshape(len(differences), -1).mean(axis=1)


def ciede2000_pixels(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (..., 3) x2 -> (...), following Sharma, Wu & Dalal (2005)."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]

    # Stretch a* for near-neutral colours, where the CIELAB hue scale is too coarse.
    chroma_mean7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(chroma_mean7 / (chroma_mean7 + 25.0**7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1 = np.degrees(np.arctan2(b1, a1)) % 360
    h2 = np.degrees(np.arctan2(b2, a2)) % 360
    achromatic = (c1 * c2) == 0

    hue_step = h2 - h1
    hue_step = np.where(hue_step > 180, hue_step - 360, np.where(hue_step < -180, hue_step + 360, hue_step))
    hue_step = np.where(achromatic, 0.0, hue_step)
    delta_l = l2 - l1
    delta_c = c2 - c1
    delta_h = 2 * np.sqrt(c1 * c2) * np.sin(np.radians(hue_step / 2))

    l_mean = (l1 + l2) / 2
    c_mean = (c1 + c2) / 2
    hue_sum = h1 + h2
    h_mean = np.where(
        np.abs(h1 - h2) <= 180, hue_sum / 2, np.where(hue_sum < 360, (hue_sum + 360) / 2, (hue_sum - 360) / 2)
    )
    h_mean = np.where(achromatic, hue_sum, h_mean)

    t = (
        1
        - 0.17 * np.cos(np.radians(h_mean - 30))
        + 0.24 * np.cos(np.radians(2 * h_mean))
        + 0.32 * np.cos(np.radians(3 * h_mean + 6))
        - 0.20 * np.cos(np.radians(4 * h_mean - 63))
    )
    rotation_angle = 30 * np.exp(-(((h_mean - 275) / 25) ** 2))
    c_mean7 = c_mean**7
    r_c = 2 * np.sqrt(c_mean7 / (c_mean7 + 25.0**7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * c_mean
    s_h = 1 + 0.015 * c_mean * t
    r_t = -np.sin(np.radians(2 * rotation_angle)) * r_c

    term_l, term_c, term_h = delta_l / s_l, delta_c / s_c, delta_h / s_h
    return np.sqrt(term_l**2 + term_c**2 + term_h**2 + r_t * term_c * term_h)


def colourfulness(rgb: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) sRGB in 0..1 -> (B,) Hasler & Suesstrunk's M on the 0..255 scale.

    M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2),
    rg = R - G, yb = (R + G) / 2 - B; 0 for a gray image.
    """
    rgb = rgb.astype(np.float64) * 255.0
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = (red - green).reshape(len(rgb), -1)
    yb = (0.5 * (red + green) - blue).reshape(len(rgb), -1)
    spread = np.sqrt(rg.var(axis=1) + yb.var(axis=1))
    offset = np.sqrt(rg.mean(axis=1) ** 2 + yb.mean(axis=1) ** 2)
    return spread + 0.3 * offset


def colourfulness_ratio(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Predicted / true colourfulness per image; NaN where the truth is practically gray."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    defined = truth >= MIN_COLOURFULNESS_FOR_RATIO
    return np.where(defined, predicted / np.where(defined, truth, 1.0), np.nan)


def image_metrics(
    *, predicted_lab: np.ndarray, true_lab: np.ndarray, predicted_rgb: np.ndarray, true_rgb: np.ndarray, device=None
) -> dict[str, np.ndarray]:
    """Every metric of METRICS for a batch: name -> (B,) float64 (SSIM computed on `device`).

    ab error and CIEDE2000 compare the LAB prediction with the true LAB; PSNR, SSIM and
    colourfulness look at the RGB image the user gets (after gamut mapping).
    """
    predicted_colour = colourfulness(predicted_rgb)
    true_colour = colourfulness(true_rgb)
    return {
        "ab_mae": ab_mae(predicted_lab[..., 1:], true_lab[..., 1:]),
        "psnr": psnr(predicted_rgb, true_rgb),
        "ssim": ssim(predicted_rgb, true_rgb, device=device),
        "ciede2000": ciede2000(predicted_lab, true_lab),
        "colourfulness": predicted_colour,
        "colourfulness_truth": true_colour,
        "colourfulness_ratio": colourfulness_ratio(predicted_colour, true_colour),
    }
