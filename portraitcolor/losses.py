"""Training losses, and their means over a validation pass. SSIM is written here rather than taken from a library so that it runs
on any device inside autograd, in float32, with the reference constants; a test checks it
against skimage.metrics.structural_similarity (gaussian_weights=True, sigma=1.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import device as devices
from .lab import ab_to_net

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


# Class rebalancing (Zhang, Isola, Efros 2016, "Colorful Image Colorization"), for a
# regression loss: ab histogram bins per axis over the network's 0..1 range (16 CIELAB
# units a bin), and how much of a uniform distribution is mixed into the empirical one
# (their lambda), which bounds the weight of the rarest colours.
REBALANCE_BINS = 16
REBALANCE_MIX = 0.5


def rebalanced_mae(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MAE with each pixel weighted by how rare its true colour is in the batch:
    (B, 2, H, W) x2 -> (B,).

    Plain MAE lets the many near-gray and skin-coloured pixels outvote the few saturated
    ones (a blue shirt, a red wall), so it pays to paint everything a safe brown. Weights
    are 1 / ((1 - MIX) * p + MIX / K) for a colour bin of batch frequency p among K occupied
    bins, scaled so that the batch's mean weight is 1. They come from the batch itself, so
    the loss needs no statistics of the training set and stays a pure function.
    """
    prediction, target = prediction.float(), target.float()
    bins = (target.detach().clamp(0, 1 - 1e-6) * REBALANCE_BINS).long()  # (B, 2, H, W)
    index = bins[:, 0] * REBALANCE_BINS + bins[:, 1]  # (B, H, W)
    counts = torch.bincount(index.flatten(), minlength=REBALANCE_BINS**2).float()
    frequency = counts / counts.sum()
    occupied = (counts > 0).sum().clamp_min(1)
    weights = 1.0 / ((1 - REBALANCE_MIX) * frequency + REBALANCE_MIX / occupied)
    weights = weights / (frequency * weights).sum()  # mean weight over the batch's pixels: 1
    error = (prediction - target).abs().mean(dim=1)  # (B, H, W)
    return (weights[index] * error).mean(dim=(1, 2))


def rebalanced_mae_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return rebalanced_mae(prediction, target).mean()


# The network's neutral ab (a = b = 0 in CIELAB) in its 0..1 units: the gray it must beat.
NEUTRAL_AB = float(ab_to_net(0.0))


def mean_chroma(ab: torch.Tensor) -> torch.Tensor:
    """Mean distance from neutral of each image's ab: (B, 2, H, W) -> (B,)."""
    offset = ab.float() - NEUTRAL_AB
    return torch.sqrt((offset * offset).sum(dim=1) + 1e-8).mean(dim=(1, 2))


def chroma_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How far each image's mean chroma is from the truth's: (B, 2, H, W) x2 -> (B,).

    A colourfulness-aware term: MAE alone pays a model to pull uncertain colours towards
    neutral, so its pictures come out paler than the truth. This term does not care which
    hue a pixel gets, only that the picture as a whole is as saturated as the real one, so
    next to MAE (which sets the hues) it pushes back against the drift to gray.
    """
    return (mean_chroma(prediction) - mean_chroma(target.detach())).abs()


def chroma_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return chroma_error(prediction, target).mean()


# ---- losses of a schedule phase ------------------------------------------------------

def _mae_per_image(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction.float() - target.float()).abs().mean(dim=(1, 2, 3))


def _mse_per_image(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((prediction.float() - target.float()) ** 2).mean(dim=(1, 2, 3))


# The reconstruction losses a --loss phase can combine; "gan" is handled by the loop,
# which owns the discriminator.
RECONSTRUCTION_LOSSES = {"mae": mae_loss, "mse": mse_loss, "ssim": ssim_loss, "rebalanced": rebalanced_mae_loss, "chroma": chroma_loss}
# The same terms per image, (B, 2, H, W) x2 -> (B,), for the validation pass; SSIM is
# measured as itself (higher is better) and its loss is 1 - SSIM (validation_loss).
_PER_IMAGE = {"mae": _mae_per_image, "mse": _mse_per_image, "rebalanced": rebalanced_mae, "chroma": chroma_error}


def reconstruction_loss(terms, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted sum of a phase's non-adversarial terms: terms = ((name, weight), ...)."""
    total = prediction.new_zeros((), dtype=torch.float32)
    for name, weight in terms:
        if name != "gan":
            total = total + weight * RECONSTRUCTION_LOSSES[name](prediction, target)
    return total


def validation_loss(terms, metrics: dict) -> float:
    """A phase's loss on the val split from validation_metrics' means: terms = ((name,
    weight), ...) without the adversarial one, which needs a discriminator."""
    return sum(weight * (1.0 - metrics["val_ssim"] if name == "ssim" else metrics[f"val_{name}"]) for name, weight in terms)


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


def validation_metrics(model, val_loader, device, precision) -> dict:
    """Every reconstruction term (SSIM as itself) and PSNR of ab (0..1), mean over images,
    and the same for gray."""
    names = (*_PER_IMAGE, "ssim", "psnr")
    sums = {prefix + name: 0.0 for prefix in ("", "gray_") for name in names}
    count = 0
    model.eval()
    with torch.no_grad():
        for l, ab, _rows in val_loader:
            l, ab = l.to(device), ab.to(device)
            with devices.autocast_as(device, precision):
                prediction = model(l)
            prediction = prediction.float()
            gray = torch.full_like(ab, NEUTRAL_AB)
            for prefix, guess in (("", prediction), ("gray_", gray)):
                terms = {name: per_image(guess, ab) for name, per_image in _PER_IMAGE.items()}
                terms["ssim"] = ssim(guess, ab)
                terms["psnr"] = 10 * torch.log10(1.0 / terms["mse"].clamp_min(1e-10))  # from the MSE above
                for name, values in terms.items():
                    sums[prefix + name] += float(values.sum())
            count += len(ab)
    model.train()
    return {f"val_{key}": value / count for key, value in sums.items()}
