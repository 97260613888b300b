"""StyleGAN frames: morph endpoints reproduce the two latents' images, smile, photo blending."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lookalike.stylegan.render import (  # noqa: E402
    linear, morph_frames, smile_frames, soft_mask, timeline, to_uint8)


def same(x: np.ndarray, y: np.ndarray) -> bool:
    """Equal up to one grey level: batched convolutions may round differently by batch size."""
    return x.shape == y.shape and int(np.abs(x.astype(int) - y.astype(int)).max()) <= 1


def _image(g, w_plus: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(g.synthesis(w_plus[None]))[0]


@pytest.fixture(scope="module")
def two_latents(tiny):
    g, latent_avg = tiny
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        w = g.get_latent(torch.randn(2, g.style_dim, generator=gen))
    w = latent_avg + 0.6 * (w - latent_avg)                                   # [2, style_dim]
    a = w[0:1].repeat(g.n_latent, 1)
    b = w[1:2].repeat(g.n_latent, 1)
    b[3:] += 0.3 * torch.randn(g.n_latent - 3, g.style_dim, generator=gen)    # a real W+
    return a, b


def test_interpolation_endpoints_reproduce_both_latents(tiny, two_latents) -> None:
    g, _ = tiny
    a, b = two_latents
    ts = timeline(5, hold_frames=1)                                            # 0, 0, .25 ... 1, 1
    frames = list(morph_frames(g, a, b, ts, batch_size=3))
    assert len(frames) == len(ts) == 7
    assert all(f.shape == (g.size, g.size, 3) and f.dtype == np.uint8 for f in frames)
    img_a, img_b = _image(g, a), _image(g, b)
    assert same(frames[0], img_a) and same(frames[1], img_a)
    assert same(frames[-1], img_b) and same(frames[-2], img_b)
    assert np.abs(img_a.astype(int) - img_b).mean() > 5                         # the ends differ
    mid = _image(g, (a + b) / 2)
    assert same(frames[3], mid)                                      # eased 0.5 = 0.5
    # numpy latents, W input and one-frame batches give the same frames
    again = list(morph_frames(g, a.numpy(), b.numpy(), ts, batch_size=1))
    assert all(same(x, y) for x, y in zip(frames, again))


def test_photo_is_blended_in_at_its_end_only(tiny, two_latents) -> None:
    g, _ = tiny
    a, b = two_latents
    photo = np.random.default_rng(0).integers(0, 256, (g.size * 2, g.size * 2, 3), dtype=np.uint8)
    small = np.asarray(torch.nn.functional.interpolate(
        torch.from_numpy(photo).permute(2, 0, 1)[None].float(), size=(g.size, g.size),
        mode="bilinear", antialias=True)[0].permute(1, 2, 0).round().clamp(0, 255).byte())
    ts = [0.0, 0.5, 1.0]
    frames = list(morph_frames(g, a, b, ts, photo_from=photo, mask="full", photo_fade=0.25,
                               ease=linear))
    # t=0: mask * photo + (1 - mask) * G(a); in the middle of a "full" mask that is the photo
    inner = slice(g.size // 4, -g.size // 4)
    assert np.abs(frames[0][inner, inner].astype(int) - small[inner, inner]).max() <= 1
    assert same(frames[1], _image(g, (a + b) / 2))                   # faded out
    assert same(frames[2], _image(g, b))


def test_smile_adds_the_direction_with_eased_strength(tiny, two_latents) -> None:
    g, _ = tiny
    a, _ = two_latents
    d = torch.randn(g.style_dim, generator=torch.Generator().manual_seed(2))
    ts = [0.0, 0.5, 1.0, 0.5, 0.0]
    frames = list(smile_frames(g, a, d, ts, strength=2.0, batch_size=2))
    assert same(frames[0], _image(g, a)) and same(frames[4], frames[0])
    assert same(frames[2], _image(g, a + 2.0 * d))                   # [style_dim] -> every layer
    assert same(frames[1], _image(g, a + 1.0 * d))                   # cosine ease: 0.5 -> 0.5
    per_layer = d[None].repeat(g.n_latent, 1)
    per_layer[:4] = 0                                                          # a [n_latent, style_dim] one
    top = list(smile_frames(g, a, per_layer, [1.0], strength=2.0))[0]
    assert same(top, _image(g, a + 2.0 * per_layer))


def test_frames_are_resized_to_the_video_size(tiny, two_latents) -> None:
    g, _ = tiny
    a, b = two_latents
    frames = list(morph_frames(g, a, b, [0.0, 1.0], out_size=48))
    assert [f.shape for f in frames] == [(48, 48, 3)] * 2


def test_bad_latent_and_mask_are_refused(tiny, two_latents) -> None:
    g, _ = tiny
    a, _ = two_latents
    with pytest.raises(ValueError, match=r"expected \[8, 64\]"):
        list(morph_frames(g, a, torch.zeros(3, g.style_dim), [0.0, 1.0]))
    with pytest.raises(ValueError, match="mask kind"):
        soft_mask(32, "circle")
