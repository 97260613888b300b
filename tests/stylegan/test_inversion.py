"""Inversion: lower loss, W+ moves toward the latent that made the image."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lookalike.errors import ConfigError
from lookalike.stylegan.inversion import (
    ENCODER_SETTING, encode, get_lr, invert, invert_many, load_encoder, noise_regularize)


def _dist(w: torch.Tensor, w_true: torch.Tensor) -> float:
    return float((w - w_true).norm())


def test_lr_schedule_ramps_up_and_down() -> None:
    assert get_lr(0.0, 0.1) == 0.0
    assert get_lr(0.05, 0.1) == pytest.approx(0.1)
    assert get_lr(0.5, 0.1) == pytest.approx(0.1)
    assert 0 < get_lr(0.9, 0.1) < 0.1
    assert get_lr(1.0, 0.1) == pytest.approx(0.0)
    assert get_lr(0.02, 0.1, rampup=0.0) == pytest.approx(0.1)


def test_wplus_inversion_with_perceptual_loss_lowers_loss_and_approaches_latent(tiny, vgg, known_latent) -> None:
    g, latent_avg = tiny
    w_true, image = known_latent
    start = latent_avg.repeat(g.n_latent, 1)
    result = invert(g, image, steps=120, lr=0.1, perceptual=vgg, pixel_weight=1.0,
                    latent_avg=latent_avg, w_spread_weight=10.0)
    assert result.w_plus.shape == (g.n_latent, g.style_dim)
    assert len(result.loss_history) == 120
    assert result.final_loss < 0.2 * result.initial_loss
    assert _dist(result.w_plus, w_true) < 0.85 * _dist(start, w_true)
    # the reconstruction is closer to the target than the start's image
    with torch.no_grad():
        before = (g.synthesis(start[None])[0] - image).abs().mean()
        after = (g.synthesis(result.w_plus[None])[0] - image).abs().mean()
    assert after < 0.5 * before


def test_w_space_inversion_recovers_latent(tiny, vgg, known_latent) -> None:
    g, latent_avg = tiny
    w_true, image = known_latent
    start = latent_avg.repeat(g.n_latent, 1)
    result = invert(g, image, steps=120, lr=0.1, perceptual=vgg, pixel_weight=1.0,
                    latent_avg=latent_avg, space="w")
    assert torch.equal(result.w_plus[0], result.w_plus[-1])            # one W for all layers
    assert result.final_loss < 0.1 * result.initial_loss
    assert _dist(result.w_plus, w_true) < 0.5 * _dist(start, w_true)


def test_uint8_input_and_resizing(tiny, known_latent) -> None:
    g, latent_avg = tiny
    _, image = known_latent
    pixels = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    big = np.kron(pixels, np.ones((2, 2, 1), dtype=np.uint8))           # 64 x 64 x 3
    result = invert(g, big, steps=30, lr=0.05, pixel_weight=1.0, latent_avg=latent_avg)
    assert result.final_loss < result.initial_loss


def test_mask_ignores_what_it_hides(tiny, known_latent) -> None:
    g, latent_avg = tiny
    w_true, image = known_latent
    spoiled = image.clone()
    spoiled[:, :, 16:] = 5.0                                           # right half ruined
    mask = np.zeros((32, 32), dtype=np.float32)
    mask[:, :14] = 1.0
    kwargs = dict(steps=80, lr=0.1, pixel_weight=1.0, latent_avg=latent_avg, space="w")
    masked = invert(g, spoiled, mask=mask, **kwargs)
    unmasked = invert(g, spoiled, **kwargs)
    assert _dist(masked.w_plus, w_true) < _dist(unmasked.w_plus, w_true)
    assert masked.final_loss < 0.2 * masked.initial_loss


def test_batches_are_independent_of_batch_size(tiny, known_latent) -> None:
    g, latent_avg = tiny
    _, image = known_latent
    other = torch.flip(image, [2])
    kwargs = dict(steps=15, lr=0.05, pixel_weight=1.0, latent_avg=latent_avg)
    together = invert_many(g, [image, other, image], batch_size=3, **kwargs)
    apart = invert_many(g, [image, other, image], batch_size=1, **kwargs)
    assert len(together) == 3
    for a, b in zip(together, apart):
        # batched convolutions round differently from single ones; cross-talk would be far larger
        assert torch.allclose(a.w_plus, b.w_plus, atol=5e-3)
        assert a.final_loss == pytest.approx(b.final_loss, rel=5e-3, abs=1e-5)
    # the third image gets its own exploration noise, not the first one's
    assert not torch.equal(together[0].w_plus, together[2].w_plus)


def test_noise_optimisation_is_regularised(tiny, known_latent) -> None:
    g, latent_avg = tiny
    _, image = known_latent
    result = invert(g, image, steps=40, lr=0.1, pixel_weight=1.0, latent_avg=latent_avg,
                    optimize_noise=True, noise_reg_weight=1e3)
    assert result.noises is not None and len(result.noises) == g.num_layers
    for n, fixed in zip(result.noises, g.fixed_noise()):
        assert n.shape == fixed.shape
        assert float(n.mean()) == pytest.approx(0.0, abs=1e-4)
        assert float(n.std()) == pytest.approx(1.0, abs=1e-3)
    assert result.final_loss < result.initial_loss
    assert not any(torch.equal(n, f) for n, f in zip(result.noises, g.fixed_noise()))
    # the generator's own buffers are untouched
    ckpt_noise = g.fixed_noise()[3].clone()
    assert torch.equal(g.fixed_noise()[3], ckpt_noise)


def test_noise_regulariser_prefers_white_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    white = [torch.randn(1, 1, 32, 32, generator=gen)]
    smooth = [torch.nn.functional.avg_pool2d(torch.randn(1, 1, 36, 36, generator=gen), 5, stride=1)
              / 0.2]
    assert float(noise_regularize(smooth)) > 10 * float(noise_regularize(white))


class _ConstantEncoder(torch.nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w.expand(x.shape[0], -1, -1) + 0 * x.mean()


def _save_exported(module: torch.nn.Module, path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(module, (torch.zeros(2, 3, 256, 256),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    return path


def _save_scripted(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_encoder_initialisation(tiny, known_latent, tmp_path: Path, fmt: str) -> None:
    g, latent_avg = tiny
    w_true, image = known_latent
    w_guess = w_true + 0.05 * torch.randn(w_true.shape, generator=torch.Generator().manual_seed(2))
    module = _ConstantEncoder(w_guess[None])
    if fmt == "export":
        path = _save_exported(module, tmp_path / "encoder.pt2")
    else:
        path = _save_scripted(module, tmp_path / "encoder.pt")
    encoder = load_encoder(path)
    w_enc = encode(encoder, image[None], g.n_latent, g.style_dim)
    assert w_enc.shape == (1, g.n_latent, g.style_dim)
    assert torch.allclose(w_enc[0], w_guess)
    result = invert(g, image, steps=20, lr=0.01, pixel_weight=1.0, init_latent=w_enc[0], latent_noise=0.0)
    assert _dist(result.w_plus, w_guess) < 0.05 * _dist(latent_avg.repeat(g.n_latent, 1), w_guess)
    assert result.final_loss <= result.initial_loss


def test_encoder_errors_name_the_setting(tiny, tmp_path: Path) -> None:
    g, _ = tiny
    with pytest.raises(ConfigError, match=ENCODER_SETTING):
        load_encoder(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(ConfigError, match="TorchScript"):
        load_encoder(junk)
    junk2 = tmp_path / "junk.pt2"
    junk2.write_bytes(b"junk")
    with pytest.raises(ConfigError, match=ENCODER_SETTING):
        load_encoder(junk2)
    wrong = _save_exported(_ConstantEncoder(torch.zeros(1, 3, 64)), tmp_path / "wrong.pt2")
    with pytest.raises(ConfigError, match=r"\[B, 8, 64\]"):
        encode(load_encoder(wrong), torch.zeros(1, 3, 32, 32), g.n_latent, g.style_dim)


def test_bad_arguments(tiny, known_latent) -> None:
    g, _ = tiny
    _, image = known_latent
    with pytest.raises(ValueError):
        invert(g, image, steps=0)
    with pytest.raises(ValueError):
        invert(g, image, steps=1, space="z")
    with pytest.raises(ValueError, match="init latent"):
        invert(g, image, steps=1, init_latent=torch.zeros(3, 64))
    with pytest.raises(ValueError):
        invert(g, np.zeros((32, 32), dtype=np.uint8), steps=1)
