import pytest
import torch

from portraitcolor.model import UNet, UNetConfig, count_parameters, widened


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


@pytest.mark.parametrize("hints", [False, True])
@pytest.mark.parametrize("new_width", [4, 8, 6])
def test_widened_network_computes_what_the_narrow_one_did(hints, new_width):
    torch.manual_seed(0)
    narrow = UNet(UNetConfig(width=4, size=32, hints=hints))
    with torch.no_grad():  # batch-norm statistics of its own, not the initial 0 and 1
        for _ in range(3):
            narrow(torch.rand(4, narrow.config.in_channels, 32, 32))
    wide = widened(narrow, new_width)
    assert wide.config == UNetConfig(width=new_width, size=32, hints=hints)
    x = torch.rand(2, narrow.config.in_channels, 32, 48)
    for mode in ("eval", "train"):
        getattr(narrow, mode)(), getattr(wide, mode)()
        with torch.no_grad():
            assert torch.allclose(narrow(x), wide(x), atol=1e-5)


def test_widened_copies_learn_apart_and_networks_only_grow():
    torch.manual_seed(0)
    wide = widened(UNet(UNetConfig(width=4, size=32)), 8)
    stem = wide.stem[0].weight
    assert torch.equal(stem[0], stem[4])  # channel 4 starts as a copy of channel 0
    optimizer = torch.optim.Adam(wide.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        (wide(torch.rand(4, 1, 32, 32)) - torch.rand(4, 2, 32, 32)).abs().mean().backward()
        optimizer.step()
    assert not torch.allclose(stem[0], stem[4])
    with pytest.raises(ValueError, match="only grow"):
        widened(wide, 4)
