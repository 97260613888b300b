"""VGG16 features from an operator file, LPIPS-style distance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lookalike.errors import ConfigError
from lookalike.stylegan.perceptual import VGG16_SETTING, VGG16Features


def _images(seed: int, n: int = 2, size: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 8, size // 8, generator=gen) * 2 - 1
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear")


def test_distance_is_zero_for_identical_and_grows_with_change(vgg) -> None:
    x = _images(0)
    assert torch.allclose(vgg.distance(x, x), torch.zeros(2), atol=1e-6)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    small = vgg.distance(x, x + 0.05 * noise)
    large = vgg.distance(x, x + 0.5 * noise)
    assert small.shape == (2,)
    assert (small > 0).all() and (large > small).all()
    # symmetric
    assert torch.allclose(vgg.distance(x, _images(3)), vgg.distance(_images(3), x), atol=1e-5)


def test_mask_restricts_the_comparison(vgg) -> None:
    x = _images(0, n=1)
    y = x.clone()
    y[..., :, 32:] = -y[..., :, 32:]                    # change only the right half
    left = torch.zeros(1, 1, 64, 64)
    left[..., :, :16] = 1.0                             # far from the changed half
    assert float(vgg.distance(x, y, mask=left)) < 0.25 * float(vgg.distance(x, y))


def test_loads_both_torchvision_layouts(vgg_file: Path, tmp_path: Path, vgg) -> None:
    state = torch.load(vgg_file, weights_only=True)
    bare = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    path = tmp_path / "features_only.pth"
    torch.save(bare, path)
    other = VGG16Features.from_file(path)
    x = _images(4)
    assert torch.equal(other(x)[-1], vgg(x)[-1])
    assert torch.equal(other.features[28].weight, state["features.28.weight"])


def test_lpips_linear_weights_are_used_when_present(vgg_file: Path, tmp_path: Path, vgg) -> None:
    state = dict(torch.load(vgg_file, weights_only=True))
    for i, c in enumerate((64, 128, 256, 512, 512)):
        state[f"lin{i}.model.1.weight"] = torch.full((1, c, 1, 1), 2.0)
    path = tmp_path / "with_lin.pth"
    torch.save(state, path)
    weighted = VGG16Features.from_file(path)
    x, y = _images(0), _images(1)
    assert torch.allclose(weighted.distance(x, y), 2 * vgg.distance(x, y), rtol=1e-4)


def test_missing_or_wrong_file_names_setting(tmp_path: Path) -> None:
    missing = tmp_path / "vgg16.pth"
    with pytest.raises(ConfigError) as err:
        VGG16Features.from_file(missing)
    assert VGG16_SETTING in str(err.value) and str(missing) in str(err.value)

    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    with pytest.raises(ConfigError, match="not a VGG16 weights file"):
        VGG16Features.from_file(wrong)

    shapes = tmp_path / "shapes.pth"
    model = VGG16Features()
    bad = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    bad["features.0.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(bad, shapes)
    with pytest.raises(ConfigError, match="not a VGG16 weights file"):
        VGG16Features.from_file(shapes)


def test_large_images_are_compared_at_256(vgg) -> None:
    x = _images(0, n=1, size=512)
    feats = vgg(x)
    assert feats[0].shape[-1] == 256 and feats[-1].shape[-1] == 16
