"""StyleGAN frames: W+ morphs (visitor -> celebrity) and a smile edit, generated in batches.

Each frame is the generator's image of a W+ latent, blended with the real aligned photo near
the ends where that photo belongs::

    frame(t) = G(w(t)) + mask * a(t) * (photo - G(w_photo))

With ``a = 1`` this is ``mask * photo + (1 - mask) * G(w_photo)``: the photo blended into its
own reconstruction with a soft mask, so a morph starts on the visitor's real face (and ends on
the celebrity's, when that photo is given).  ``a(t)`` eases to 0 over the first (last)
``photo_fade`` of the timeline, after which the frame is the generator's alone.

Frames are yielded one at a time as uint8 arrays [S, S, 3] (RGB), ready for the video writer;
the generator runs ``batch_size`` frames per call.  Timelines are sequences of ``t`` in [0, 1]
(``timeline`` builds one with still frames at both ends); easing is applied here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from lookalike.stylegan.generator import Generator
from lookalike.stylegan.inversion import ImageLike, to_image_tensor, to_mask_tensor

Ease = Callable[[float], float]


def ease_in_out(t: float) -> float:
    """Cosine ease: 0 -> 0, 1 -> 1, zero slope at both ends."""
    t = min(1.0, max(0.0, float(t)))
    return 0.5 - 0.5 * math.cos(math.pi * t)


def linear(t: float) -> float:
    return min(1.0, max(0.0, float(t)))


def timeline(n_frames: int, hold_frames: int = 0) -> list[float]:
    """``hold_frames`` at t=0, ``n_frames`` evenly from 0 to 1 inclusive, ``hold_frames`` at t=1."""
    if n_frames < 2:
        raise ValueError("a timeline needs at least 2 frames")
    ramp = [i / (n_frames - 1) for i in range(n_frames)]
    return [0.0] * hold_frames + ramp + [1.0] * hold_frames


def soft_mask(size: int, kind: str = "ellipse", feather: float = 0.08) -> np.ndarray:
    """A soft blending mask [size, size] float32 in [0, 1].

    ``ellipse``: an ellipse around the face of an FFHQ-aligned crop (centre slightly below the
    middle, 0.38 x 0.46 of the side), with a smooth edge ``feather`` x side wide.
    ``full``: the whole frame, with a smooth border ``feather`` x side wide.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (xx + 0.5) / size
    v = (yy + 0.5) / size
    if kind == "ellipse":
        r = np.sqrt(((u - 0.5) / 0.38) ** 2 + ((v - 0.54) / 0.46) ** 2)   # 1 on the ellipse
        d = (1.0 - r) * 0.42                                                # ~ distance in sides
    elif kind == "full":
        d = np.minimum.reduce([u, v, 1 - u, 1 - v])
    else:
        raise ValueError(f"mask kind must be 'ellipse' or 'full', got {kind!r}")
    if feather <= 0:
        return (d > 0).astype(np.float32)
    x = np.clip(d / feather, 0.0, 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)                        # smoothstep


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]."""
    x = ((images.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def as_w_plus(latent: torch.Tensor | np.ndarray, generator: Generator) -> torch.Tensor:
    """W [style_dim] or W+ [n_latent, style_dim] -> float32 W+ [n_latent, style_dim] on the generator's device."""
    w = torch.as_tensor(np.asarray(latent) if isinstance(latent, np.ndarray) else latent).float()
    if w.ndim == 1 or (w.ndim == 2 and w.shape[0] == 1):
        w = w.reshape(1, -1).repeat(generator.n_latent, 1)
    if w.shape != (generator.n_latent, generator.style_dim):
        raise ValueError(f"latent has shape {list(w.shape)}, expected "
                         f"[{generator.n_latent}, {generator.style_dim}] for this generator")
    return w.to(generator.input.input.device)


def blend_noise(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], t: float) -> list[torch.Tensor]:
    """Mix two sets of N(0,1) noise maps keeping unit variance: ((1-t) a + t b) / sqrt((1-t)^2 + t^2)."""
    norm = math.sqrt((1 - t) ** 2 + t**2)
    return [((1 - t) * x + t * y) / norm for x, y in zip(a, b)]


class _PhotoEnd:
    """The real photo at one end of a timeline and the residual it adds: mask * (photo - G(w))."""

    def __init__(self, generator: Generator, photo: ImageLike, w: torch.Tensor,
                 mask: torch.Tensor, noise: Sequence[torch.Tensor] | None) -> None:
        size, device = generator.size, generator.input.input.device
        image = to_image_tensor(photo, size, device)[None]                       # [1, 3, S, S]
        if noise is not None:
            noise = [n.to(device) for n in noise]
        with torch.no_grad():
            recon = generator.synthesis(w[None], noise=noise)                     # [1, 3, S, S]
        self.residual = mask * (image - recon)


def _prepare_mask(mask: ImageLike | str | None, size: int, device) -> torch.Tensor:
    if mask is None:
        mask = "ellipse"
    if isinstance(mask, str):
        mask = soft_mask(size, mask)
    return to_mask_tensor(mask, size, device)[None]                               # [1, 1, S, S]


@torch.no_grad()
def render_frames(generator: Generator, latents: torch.Tensor, *,
                  noise_at: Callable[[int], Sequence[torch.Tensor] | None] | None = None,
                  residual_at: Callable[[int], torch.Tensor | None] | None = None,
                  batch_size: int = 4, out_size: int | None = None) -> Iterator[np.ndarray]:
    """Generate one uint8 frame [S, S, 3] per W+ row of ``latents`` [T, n_latent, style_dim].

    ``noise_at(i)``: the noise maps for frame i (None: the checkpoint's fixed maps);
    ``residual_at(i)``: [1, 3, size, size] added to frame i before conversion (photo blending);
    both are called per batch, so long timelines at 1024 px do not hold every map in memory.
    ``out_size``: resize frames to this side (area down / bicubic up), default the generator's.
    """
    device = generator.input.input.device
    n = latents.shape[0]
    for lo in range(0, n, max(1, batch_size)):
        hi = min(n, lo + max(1, batch_size))
        noise = None
        if noise_at is not None:
            per = [noise_at(i) for i in range(lo, hi)]
            if any(p is not None for p in per):
                fixed = generator.fixed_noise()
                per = [p if p is not None else fixed for p in per]
                noise = [torch.cat([p[k].to(device) for p in per]) for k in range(len(fixed))]  # [b, 1, r, r]
        images = generator.synthesis(latents[lo:hi].to(device), noise=noise)     # [b, 3, S, S]
        if residual_at is not None:
            for j, i in enumerate(range(lo, hi)):
                r = residual_at(i)
                if r is not None:
                    images[j:j + 1] += r
        if out_size is not None and out_size != images.shape[-1]:
            mode = "area" if out_size < images.shape[-1] else "bicubic"
            images = F.interpolate(images, size=(out_size, out_size), mode=mode)
        yield from to_uint8(images)


def morph_frames(generator: Generator, w_from: torch.Tensor | np.ndarray,
                 w_to: torch.Tensor | np.ndarray, ts: Sequence[float], *,
                 ease: Ease = ease_in_out,
                 photo_from: ImageLike | None = None, photo_to: ImageLike | None = None,
                 mask: ImageLike | str | None = "ellipse", photo_fade: float = 0.25,
                 noise_from: Sequence[torch.Tensor] | None = None,
                 noise_to: Sequence[torch.Tensor] | None = None,
                 batch_size: int = 4, out_size: int | None = None) -> Iterator[np.ndarray]:
    """Morph W+ ``w_from`` -> ``w_to`` (visitor -> celebrity) along ``ts``: frame i shows
    ``lerp(w_from, w_to, ease(ts[i]))``.  Without photos, t=0 and t=1 reproduce the two latents'
    images.  ``photo_from`` / ``photo_to`` (aligned crops) are blended in near their ends (see
    the module doc); ``mask`` is an H x W array, ``"ellipse"`` or ``"full"``.  ``noise_from`` /
    ``noise_to`` are optimised noise maps from inversion, blended along the morph."""
    a = as_w_plus(w_from, generator)
    b = as_w_plus(w_to, generator)
    s = torch.tensor([ease(t) for t in ts], dtype=torch.float32, device=a.device).view(-1, 1, 1)
    latents = a[None] + s * (b - a)[None]                                       # [T, n_latent, style_dim]

    noise_at = None
    if noise_from is not None or noise_to is not None:
        fixed = generator.fixed_noise()
        na = [n.to(a.device) for n in noise_from] if noise_from is not None else fixed
        nb = [n.to(a.device) for n in noise_to] if noise_to is not None else fixed

        def noise_at(i: int) -> list[torch.Tensor]:
            return blend_noise(na, nb, float(s[i]))

    residual_at = None
    if photo_from is not None or photo_to is not None:
        m = _prepare_mask(mask, generator.size, a.device)
        end_a = _PhotoEnd(generator, photo_from, a, m, noise_from) if photo_from is not None else None
        end_b = _PhotoEnd(generator, photo_to, b, m, noise_to) if photo_to is not None else None

        def residual_at(i: int) -> torch.Tensor:
            r = 0.0
            if end_a is not None:
                r = r + _photo_weight(ts[i], photo_fade, ease) * end_a.residual
            if end_b is not None:
                r = r + _photo_weight(1 - ts[i], photo_fade, ease) * end_b.residual
            return r

    yield from render_frames(generator, latents, noise_at=noise_at, residual_at=residual_at,
                             batch_size=batch_size, out_size=out_size)


def smile_frames(generator: Generator, w: torch.Tensor | np.ndarray, direction: torch.Tensor | np.ndarray,
                 ts: Sequence[float], *, strength: float = 3.0, ease: Ease = ease_in_out,
                 photo: ImageLike | None = None, mask: ImageLike | str | None = "ellipse",
                 photo_fade: float = 0.25, noise: Sequence[torch.Tensor] | None = None,
                 batch_size: int = 4, out_size: int | None = None) -> Iterator[np.ndarray]:
    """Make the face smile: frame i shows ``w + strength * ease(ts[i]) * direction``.

    ``direction`` is [n_latent, style_dim] or [style_dim] (applied to every layer); a negative
    ``strength`` goes the other way.  ``photo`` (the aligned crop) is blended in at the start.
    For a smile that comes and goes, pass a timeline that rises and falls (e.g. 0 -> 1 -> 0).
    """
    base = as_w_plus(w, generator)
    d = as_w_plus(direction, generator)
    s = torch.tensor([strength * ease(t) for t in ts], dtype=torch.float32, device=base.device).view(-1, 1, 1)
    latents = base[None] + s * d[None]                                          # [T, n_latent, style_dim]
    residual_at = None
    if photo is not None:
        end = _PhotoEnd(generator, photo, base, _prepare_mask(mask, generator.size, base.device), noise)

        def residual_at(i: int) -> torch.Tensor:
            return _photo_weight(ts[i], photo_fade, ease) * end.residual

    noise_at = None
    if noise is not None:
        fixed_device = [n.to(base.device) for n in noise]

        def noise_at(i: int) -> list[torch.Tensor]:
            return fixed_device

    yield from render_frames(generator, latents, noise_at=noise_at, residual_at=residual_at,
                             batch_size=batch_size, out_size=out_size)


def _photo_weight(t: float, fade: float, ease: Ease) -> float:
    """1 at t=0, eased down to 0 at t=fade (never reaches 0 when fade > 1)."""
    if fade <= 0:
        return 1.0 if t <= 0 else 0.0
    return 1.0 - ease(min(1.0, t / fade))
