"""Training losses. SSIM is written here rather than taken from a library so that it runs
on any device inside autograd, in float32, with the reference constants; a test checks it
against skimage.metrics.structural_similarity (gaussian_weights=True, sigma=1.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _gaussian_window(channels: int, device, dtype=torch.float32) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - (SSIM_WINDOW - 1) / 2
    kernel_1d = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    kernel_1d = kernel_1d / kernel_1d.sum()
    kernel_2d = kernel_1d[:, None] * kernel_1d[None, :]
    return kernel_2d.expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image: (B, C, H, W) x2 -> (B,), computed in float32.

    Gaussian 11x11 window, sigma 1.5, K1 = 0.01, K2 = 0.03, sample covariances
    (the N/(N-1) correction, as skimage does with gaussian_weights=True), averaged over
    the 'valid' region where the window fits, as skimage crops its border.
    """
    x = x.float()
    y = y.float()
    channels = x.shape[1]
    window = _gaussian_window(channels, x.device)
    filt = lambda t: F.conv2d(t, window, groups=channels)  # noqa: E731 - 'valid' region only
    n = SSIM_WINDOW * SSIM_WINDOW
    correction = n / (n - 1)
    mu_x, mu_y = filt(x), filt(y)
    var_x = correction * (filt(x * x) - mu_x * mu_x)
    var_y = correction * (filt(y * y) - mu_y * mu_y)
    cov_xy = correction * (filt(x * y) - mu_x * mu_y)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(dim=(1, 2, 3))


def ssim_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM over the batch; inputs in 0..1."""
    return 1.0 - ssim(prediction, target).mean()


def mae_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(prediction.float(), target.float())


def mse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(prediction.float(), target.float())


# ---- losses of a schedule phase ------------------------------------------------------

# The reconstruction losses a --loss phase can combine; "gan" is handled by the loop,
# which owns the discriminator.
RECONSTRUCTION_LOSSES = {"mae": mae_loss, "mse": mse_loss, "ssim": ssim_loss}


def reconstruction_loss(terms, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted sum of a phase's non-adversarial terms: terms = ((name, weight), ...)."""
    total = prediction.new_zeros((), dtype=torch.float32)
    for name, weight in terms:
        if name != "gan":
            total = total + weight * RECONSTRUCTION_LOSSES[name](prediction, target)
    return total


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """pix2pix's vanilla GAN loss for the generator: make the discriminator say 'real'."""
    fake_logits = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Real pairs -> 1, generated pairs -> 0; halved as in pix2pix to slow D against G."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)
