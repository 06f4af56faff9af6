"""The paper's U-Net: L in, ab out, joined with L into a LAB image.

Encoder: five stages, 128x128x1 -> 8x8x512 at width 64 (S/16 x S/16 x 8w in general).
Decoder: upsample, concatenate with the matching encoder stage, convolve; ReLU and
batch normalisation after every convolution; a sigmoid gives the two colour channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .hints import HINT_CHANNELS
from .inference import SIDE_MULTIPLE

# The training size is also colorize's default render size: a weights file claiming more
# would make every photo an enormous tensor, so it is refused as untrusted input.
MAX_SIZE = 4096


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild the exact network; saved inside every weights file."""

    width: int = 64  # channels of the first stage; the deepest has 8 * width
    size: int = 128  # side of the square training images (the default render size)
    hints: bool = False  # HINT_CHANNELS more inputs beside L: colour hints (hints.py)

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or not 1 <= self.width <= 512:
            raise ValueError(f"width must be an integer in 1..512, got {self.width!r}")
        if not isinstance(self.size, int) or not SIDE_MULTIPLE <= self.size <= MAX_SIZE or self.size % SIDE_MULTIPLE:
            raise ValueError(f"size must be a multiple of {SIDE_MULTIPLE} in {SIDE_MULTIPLE}..{MAX_SIZE}, got {self.size!r}")
        if not isinstance(self.hints, bool):
            raise ValueError(f"hints must be true or false, got {self.hints!r}")

    @property
    def in_channels(self) -> int:
        return 1 + (HINT_CHANNELS if self.hints else 0)

    def to_dict(self) -> dict:
        values = asdict(self)
        if not self.hints:  # left out: a model without hints stays readable by older versions
            del values["hints"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "UNetConfig":
        known = {field.name for field in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(sorted(unknown))}")
        return cls(**values)


class ConvBlock(nn.Sequential):
    """conv 3x3 -> BatchNorm -> ReLU, twice: the unit every stage is built from."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DownStage(nn.Module):
    """Halve the resolution (2x2 max-pool), then a ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.block = ConvBlock(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.pool(x))


class UpStage(nn.Module):
    """Upsample x2, concatenate the encoder's skip tensor, then a ConvBlock."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = ConvBlock(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # Nearest upsampling: the paper's UpSampling2D, and cheaper than bilinear on CPU.
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.block(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        w = self.config.width
        channels = [w, 2 * w, 4 * w, 8 * w, 8 * w]
        self.stem = ConvBlock(self.config.in_channels, channels[0])
        self.down = nn.ModuleList(
            DownStage(channels[i], channels[i + 1]) for i in range(len(channels) - 1)
        )
        self.up = nn.ModuleList(
            UpStage(channels[i + 1], channels[i], channels[i]) for i in reversed(range(len(channels) - 1))
        )
        self.head = nn.Conv2d(channels[0], 2, kernel_size=1)

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) L in 0..1 -> (B, 2, H, W) ab in 0..1 (sigmoid).  H, W multiples of 16.

        A hint-aware network takes (B, 1 + HINT_CHANNELS, H, W), L then the hints; given L
        alone it colours without hints."""
        if l.shape[-1] % SIDE_MULTIPLE or l.shape[-2] % SIDE_MULTIPLE:
            raise ValueError(f"input sides must be multiples of {SIDE_MULTIPLE}, got {tuple(l.shape[-2:])}")
        if self.config.hints and l.shape[1] == 1:
            l = torch.cat([l, l.new_zeros(l.shape[0], HINT_CHANNELS, *l.shape[2:])], dim=1)
        skips = [self.stem(l)]  # (B, w, H, W)
        for stage in self.down:  # ... -> (B, 8w, H/16, W/16)
            skips.append(stage(skips[-1]))
        x = skips.pop()
        for stage in self.up:  # (B, 8w, H/16, W/16) -> (B, w, H, W)
            x = stage(x, skips.pop())
        return torch.sigmoid(self.head(x))

    def lab(self, l: torch.Tensor) -> torch.Tensor:
        """The paper's last concatenation: (B, 1, H, W) L -> (B, 3, H, W) normalised LAB."""
        return torch.cat([l[:, :1], self(l)], dim=1)


# The first convolution: the only weights that see the inputs, hence the only ones whose
# shape depends on whether the network takes hints.
STEM_WEIGHT = "stem.0.weight"


def with_inputs_of(source: "UNet", config: UNetConfig) -> "UNet":
    """A network of `config` with `source`'s weights, where the two differ at most in taking
    hints: hint inputs added start at zero weight (the new network colours exactly as the
    old one until trained with hints); hint inputs dropped take their weights along."""
    state = source.state_dict()
    target = UNet(config)
    stem = target.state_dict()[STEM_WEIGHT]
    if stem.shape != state[STEM_WEIGHT].shape:
        adjusted = stem.new_zeros(stem.shape)
        shared = min(stem.shape[1], state[STEM_WEIGHT].shape[1])
        adjusted[:, :shared] = state[STEM_WEIGHT][:, :shared]
        state[STEM_WEIGHT] = adjusted
    target.load_state_dict(state)
    return target


def widened(source: "UNet", width: int) -> "UNet":
    """A network `width` wide that computes exactly what the narrower `source` computes
    (Net2WiderNet, Chen et al. 2016): a trained model grows without starting over.

    Each new channel copies an old one (weights, batch-norm parameters and statistics), and
    the layers reading a copied channel share its old weight among the copies in random
    positive parts summing to one. The sum keeps the function; the unequal parts make the
    copies' gradients differ, so they learn different things instead of staying twins."""
    old_width = source.config.width
    if width < old_width:
        raise ValueError(f"a network can only grow: width {width} is narrower than {old_width}")
    target = UNet(UNetConfig(width=width, size=source.config.size, hints=source.config.hints))
    generator = torch.Generator().manual_seed(0)  # the same wider network every time
    state = {}

    def spread(old: int, new: int) -> _Feature:
        mapping = torch.arange(new) % old
        parts = torch.rand(new, generator=generator) + 0.5  # kept away from 0: every copy learns
        totals = torch.zeros(old).index_add_(0, mapping, parts)
        return _Feature(mapping, parts / totals[mapping], old)

    def conv(name: str, weight: torch.Tensor, out: _Feature, into: _Feature) -> None:
        state[name] = weight[out.mapping][:, into.mapping] * into.parts.view(1, -1, 1, 1)

    def norm(prefix: str, module: nn.BatchNorm2d, out: _Feature) -> None:
        for key in ("weight", "bias", "running_mean", "running_var"):
            state[f"{prefix}.{key}"] = getattr(module, key).detach()[out.mapping]
        state[f"{prefix}.num_batches_tracked"] = module.num_batches_tracked.detach().clone()

    def block(prefix: str, old_block: ConvBlock, into: _Feature) -> _Feature:
        old_channels = old_block[0].out_channels
        new_channels = old_channels * width // old_width
        middle, out = spread(old_channels, new_channels), spread(old_channels, new_channels)
        conv(f"{prefix}.0.weight", old_block[0].weight.detach(), middle, into)
        norm(f"{prefix}.1", old_block[1], middle)
        conv(f"{prefix}.3.weight", old_block[3].weight.detach(), out, middle)
        norm(f"{prefix}.4", old_block[4], out)
        return out

    inputs = _unchanged(source.config.in_channels)
    features = [block("stem", source.stem, inputs)]
    for index, stage in enumerate(source.down):
        features.append(block(f"down.{index}.block", stage.block, features[-1]))
    x = features.pop()
    for index, stage in enumerate(source.up):
        skip = features.pop()
        # The stage reads cat([x, skip]): the skip's channels come after x's old ones.
        joined = _Feature(torch.cat([x.mapping, skip.mapping + x.old_channels]), torch.cat([x.parts, skip.parts]), x.old_channels + skip.old_channels)
        x = block(f"up.{index}.block", stage.block, joined)
    conv("head.weight", source.head.weight.detach(), _unchanged(2), x)
    state["head.bias"] = source.head.bias.detach().clone()
    target.load_state_dict(state)
    return target


@dataclass(frozen=True)
class _Feature:
    """How a widened tensor's channels come from the old one's: channel j copies old channel
    mapping[j], and a layer reading it takes parts[j] of the old weight."""

    mapping: torch.Tensor
    parts: torch.Tensor
    old_channels: int


def _unchanged(channels: int) -> _Feature:
    return _Feature(torch.arange(channels), torch.ones(channels), channels)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class PatchDiscriminator(nn.Module):
    """pix2pix's 70x70 PatchGAN, conditioned on L: it judges (L, ab) pairs patch by patch.

    (B, 1, H, W) L and (B, 2, H, W) ab -> (B, 1, H/8 - 2, W/8 - 2) logits, each seeing a
    70x70 patch with layers=3. width is the first layer's channels (pix2pix uses 64).
    """

    def __init__(self, *, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        if width < 1 or layers < 1:
            raise ValueError(f"width and layers must be positive, got {width}, {layers}")
        blocks = [nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for i in range(1, layers + 1):
            out_channels = width * min(2**i, 8)
            stride = 2 if i < layers else 1  # the last one keeps resolution, as pix2pix's does
            blocks += [
                nn.Conv2d(channels, out_channels, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out_channels
        blocks.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([l, ab], dim=1))
