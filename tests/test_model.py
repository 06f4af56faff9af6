import pytest
import torch

from portraitcolor.model import UNet, UNetConfig, count_parameters


@pytest.mark.parametrize("height, width", [(32, 32), (64, 48), (16, 80)])
def test_shapes_and_range(height, width):
    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, size=32)).eval()
    l = torch.rand(2, 1, height, width)
    ab = model(l)
    assert ab.shape == (2, 2, height, width)
    assert torch.isfinite(ab).all() and ab.min() >= 0 and ab.max() <= 1
    lab = model.lab(l)
    assert lab.shape == (2, 3, height, width) and torch.equal(lab[:, :1], l)


def test_paper_geometry_bottleneck_is_8x8x512():
    model = UNet(UNetConfig(width=64, size=128)).eval()
    captured = {}
    model.down[-1].register_forward_hook(lambda module, args, out: captured.update(bottleneck=out.shape))
    with torch.no_grad():
        model(torch.rand(1, 1, 128, 128))
    assert captured["bottleneck"] == (1, 512, 8, 8)


def test_every_convolution_is_followed_by_batchnorm_and_relu():
    model = UNet(UNetConfig(width=4, size=32))
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU))]
    convs = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.Conv2d) and m.out_channels != 2]
    for i in convs:
        assert isinstance(layers[i + 1], torch.nn.BatchNorm2d) and isinstance(layers[i + 2], torch.nn.ReLU)


def test_sides_must_be_multiples_of_16():
    with pytest.raises(ValueError, match="multiples of 16"):
        UNet(UNetConfig(width=4, size=32))(torch.rand(1, 1, 40, 32))


def test_gradients_flow_and_width_scales_parameters():
    model = UNet(UNetConfig(width=4, size=32))
    model(torch.rand(2, 1, 32, 32)).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert count_parameters(UNet(UNetConfig(width=8))) > 3.5 * count_parameters(model)


@pytest.mark.parametrize("values", [{"width": 0}, {"size": 40}, {"size": 1 << 20}, {"width": 8, "depth": 3}])
def test_config_rejects_bad_values(values):
    with pytest.raises(ValueError):
        UNetConfig.from_dict(values)
