"""Inversion: find the W+ latent whose image matches an aligned face crop.

The optimiser follows the StyleGAN2 projector (Karras et al. 2020, appendix D): start from the
mean W (the checkpoint's ``latent_avg``) or from an encoder's output, perturb the latent with
noise that decays over the first 75 % of the steps, ramp the learning rate up (cosine) at the
start and down at the end, and minimise a perceptual distance (VGG16, LPIPS-style) plus a
pixel loss.  Optionally the per-layer noise maps are optimised too, kept near white noise by
the projector's multi-scale autocorrelation penalty and renormalised after each step.

Images here are float [3, H, W] in [-1, 1] (or uint8 H x W x 3, converted); they are resized to
the generator's resolution.  Everything runs on the generator's device (CUDA when it is there).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lookalike.errors import ConfigError
from lookalike.stylegan.generator import Generator
from lookalike.stylegan.perceptual import VGG16Features

ENCODER_SETTING = "LOOKALIKE_STYLEGAN_ENCODER"

ImageLike = torch.Tensor | np.ndarray


@dataclass
class InversionResult:
    """One image's inversion.  ``w_plus`` [n_latent, style_dim] float32 on CPU; ``noises``
    (only when noise maps were optimised) one [1, 1, r, r] map per layer; ``loss_history`` the
    loss at every step (with the exploration noise of early steps); ``initial_loss`` and
    ``final_loss`` the loss at the starting and final latent without it."""

    w_plus: torch.Tensor
    loss_history: list[float] = field(default_factory=list)
    initial_loss: float = math.nan
    final_loss: float = math.nan
    noises: list[torch.Tensor] | None = None


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu`` / ``cuda`` / ``cuda:N`` as given."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"LOOKALIKE_STYLEGAN_DEVICE={preference}, but CUDA is not available here",
                          advice="Set LOOKALIKE_STYLEGAN_DEVICE=auto or cpu, or run this on a CUDA machine.")
    return device


def get_lr(t: float, initial_lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Projector schedule at progress ``t`` in [0, 1]: linear ramp-up over ``rampup``, cosine
    ramp-down over the last ``rampdown``."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return initial_lr * ramp


def noise_regularize(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of squared 1-pixel autocorrelations of each map at every scale down to 8x8.  -> [B]"""
    loss = 0.0
    for noise in noises:
        size = noise.shape[2]
        batch = noise.shape[0]
        while True:
            loss = loss + (noise * torch.roll(noise, shifts=1, dims=3)).mean((1, 2, 3)).pow(2) \
                        + (noise * torch.roll(noise, shifts=1, dims=2)).mean((1, 2, 3)).pow(2)
            if size <= 8:
                break
            noise = noise.reshape(batch, 1, size // 2, 2, size // 2, 2).mean((3, 5))
            size //= 2
    return loss


@torch.no_grad()
def _noise_normalize_(noises: Sequence[torch.Tensor]) -> None:
    for noise in noises:
        mean = noise.mean((1, 2, 3), keepdim=True)
        std = noise.std(dim=(1, 2, 3), keepdim=True)
        noise.sub_(mean).div_(std)


@torch.no_grad()
def w_statistics(generator: Generator, n: int = 10_000, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Mean W [style_dim] and the RMS distance of W samples from it (the projector's latent_std)."""
    cache = generator.__dict__.setdefault("_w_stats", {})
    key = (n, seed, str(generator.input.input.device))
    if key not in cache:
        device = generator.input.input.device
        gen = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(n, generator.style_dim, generator=gen).to(device)
        w = torch.cat([generator.style(chunk) for chunk in z.split(2048)])
        mean = w.mean(0)
        std = float(((w - mean).pow(2).sum() / n).sqrt())
        cache[key] = (mean, std)
    return cache[key]


def to_image_tensor(image: ImageLike, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 H x W x 3 (RGB) or float [3, H, W] in [-1, 1] -> float [3, size, size] in [-1, 1]."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 H x W x 3 RGB array, got {image.dtype} {image.shape}")
        # as_tensor copies a read-only array (a decoded JPEG's) instead of warning about it
        x = torch.as_tensor(np.array(image, copy=not image.flags.writeable)).permute(2, 0, 1).float() / 127.5 - 1.0
    else:
        x = image.detach().float()
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"expected a [3, H, W] image tensor, got {list(x.shape)}")
    x = x.to(device)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[0]
    return x


def to_mask_tensor(mask: ImageLike, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Mask H x W (bool, uint8 0..255 or float 0..1) -> float [1, size, size] in [0, 1]."""
    m = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
    if m.dtype == torch.uint8:
        m = m.float() / 255.0
    m = m.float()
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {list(m.shape)}")
    m = m.to(device)
    if m.shape != (size, size):
        m = F.interpolate(m[None, None], size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[0, 0]
    return m.clamp(0, 1)[None]


# --- encoder initialisation ---------------------------------------------------------------

def load_encoder(path: str | Path, device: str | torch.device = "cpu", *,
                 setting: str = ENCODER_SETTING) -> nn.Module:
    """Load an operator-supplied encoder that maps images [B, 3, S, S] in [-1, 1] to absolute
    latents, W+ [B, n_latent, style_dim] or W [B, style_dim] (e.g. an e4e/pSp encoder exported
    with its ``latent_avg`` offset added).  Formats: a ``torch.export`` program (``.pt2``) or a
    TorchScript file (any other name)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{setting}: StyleGAN encoder not found: {path}")
    try:
        if path.suffix == ".pt2":
            module = torch.export.load(str(path)).module().to(device)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{setting}: {path} is not a torch.export (.pt2) or TorchScript encoder: "
                          f"{exc}") from None
    return module


@torch.no_grad()
def encode(encoder: nn.Module, images: torch.Tensor, n_latent: int, style_dim: int,
           input_size: int = 256) -> torch.Tensor:
    """Run ``encoder`` on images [B, 3, H, W] in [-1, 1].  -> W+ [B, n_latent, style_dim]"""
    x = images
    if x.shape[-1] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False,
                          antialias=True)
    w = encoder(x)
    if isinstance(w, (tuple, list)):
        w = w[0]
    if w.ndim == 2 and w.shape[1] == style_dim:
        w = w[:, None].repeat(1, n_latent, 1)
    if w.shape[1:] != (n_latent, style_dim):
        raise ConfigError(f"{ENCODER_SETTING}: the encoder returned {list(w.shape)}, expected "
                          f"[B, {n_latent}, {style_dim}] for this generator")
    return w.float()


# --- the optimiser ------------------------------------------------------------------------

def invert(generator: Generator, target: ImageLike, *, steps: int = 500, lr: float = 0.1,
           lr_rampup: float = 0.05, lr_rampdown: float = 0.25,
           perceptual: VGG16Features | None = None, perceptual_weight: float = 1.0,
           pixel_weight: float = 0.1, mask: ImageLike | None = None,
           init_latent: torch.Tensor | None = None, latent_avg: torch.Tensor | None = None,
           space: str = "w+", w_spread_weight: float = 0.0,
           optimize_noise: bool = False, noise_reg_weight: float = 1e5,
           latent_noise: float = 0.05, latent_noise_ramp: float = 0.75,
           seed: int = 0) -> InversionResult:
    """Invert one aligned face.  See ``invert_many`` for the arguments."""
    return invert_many(
        generator, [target], steps=steps, lr=lr, lr_rampup=lr_rampup, lr_rampdown=lr_rampdown,
        batch_size=1, perceptual=perceptual, perceptual_weight=perceptual_weight,
        pixel_weight=pixel_weight, masks=None if mask is None else [mask],
        init_latents=None if init_latent is None else [init_latent], latent_avg=latent_avg,
        space=space, w_spread_weight=w_spread_weight, optimize_noise=optimize_noise, noise_reg_weight=noise_reg_weight,
        latent_noise=latent_noise, latent_noise_ramp=latent_noise_ramp, seed=seed)[0]


def invert_many(generator: Generator, targets: Sequence[ImageLike], *, steps: int = 500,
                lr: float = 0.1, lr_rampup: float = 0.05, lr_rampdown: float = 0.25,
                batch_size: int = 4, perceptual: VGG16Features | None = None,
                perceptual_weight: float = 1.0, pixel_weight: float = 0.1,
                masks: Sequence[ImageLike | None] | None = None,
                init_latents: Sequence[torch.Tensor | None] | None = None,
                latent_avg: torch.Tensor | None = None,
                space: str = "w+", w_spread_weight: float = 0.0,
                optimize_noise: bool = False, noise_reg_weight: float = 1e5,
                latent_noise: float = 0.05, latent_noise_ramp: float = 0.75,
                seed: int = 0) -> list[InversionResult]:
    """Invert aligned faces, ``batch_size`` at a time; returns one result per target, in order.

    - ``targets``: uint8 H x W x 3 RGB arrays or float [3, H, W] tensors in [-1, 1].
    - loss per image = ``perceptual_weight`` * LPIPS-style distance (skipped when ``perceptual``
      is None) + ``pixel_weight`` * mean squared error, both restricted to ``masks`` (soft
      H x W face masks) where given, + ``noise_reg_weight`` * noise autocorrelation when
      ``optimize_noise``, + ``w_spread_weight`` * the mean squared distance of the W+ rows from
      their mean, in units of the W distribution's variance (keeps W+ near W, where edits such
      as the smile direction behave; 0 disables).  Images in a batch do not influence each other.
    - ``space``: ``"w+"`` optimises one W per layer; ``"w"`` one W for all layers (the
      projector's default: closer to the training distribution, less exact).
    - start: ``init_latents`` (W [style_dim] or W+ [n_latent, style_dim], e.g. from ``encode``)
      where given, else ``latent_avg`` ([1, style_dim], the checkpoint's), else the mean W of
      10,000 samples.
    - learning rate: Adam at ``lr`` with the projector's ramp-up / ramp-down fractions;
      exploration noise of ``latent_noise`` x latent std, decaying to 0 at ``latent_noise_ramp``.
    - ``seed`` makes the exploration noise reproducible.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if space not in ("w+", "w"):
        raise ValueError(f"space must be 'w+' or 'w', got {space!r}")
    device = generator.input.input.device
    generator.requires_grad_(False)
    if perceptual is not None:
        perceptual = perceptual.to(device).requires_grad_(False)
    mean_w, latent_std = w_statistics(generator)
    start_w = latent_avg.reshape(-1).to(device) if latent_avg is not None else mean_w
    masks = list(masks) if masks is not None else [None] * len(targets)
    init_latents = list(init_latents) if init_latents is not None else [None] * len(targets)
    if not len(masks) == len(init_latents) == len(targets):
        raise ValueError("targets, masks and init_latents must have the same length")

    results: list[InversionResult] = []
    for lo in range(0, len(targets), max(1, batch_size)):
        hi = min(len(targets), lo + max(1, batch_size))
        results += _invert_batch(
            generator, targets[lo:hi], masks[lo:hi], init_latents[lo:hi], start_w, latent_std,
            steps=steps, lr=lr, lr_rampup=lr_rampup, lr_rampdown=lr_rampdown,
            perceptual=perceptual, perceptual_weight=perceptual_weight, pixel_weight=pixel_weight,
            space=space, w_spread_weight=w_spread_weight, optimize_noise=optimize_noise, noise_reg_weight=noise_reg_weight,
            latent_noise=latent_noise, latent_noise_ramp=latent_noise_ramp, seed=seed + lo)
    return results


def _invert_batch(generator: Generator, targets, masks, init_latents, start_w: torch.Tensor,
                  latent_std: float, *, steps, lr, lr_rampup, lr_rampdown, perceptual,
                  perceptual_weight, pixel_weight, space, w_spread_weight, optimize_noise, noise_reg_weight, latent_noise,
                  latent_noise_ramp, seed) -> list[InversionResult]:
    device = generator.input.input.device
    size, n_latent, style_dim = generator.size, generator.n_latent, generator.style_dim
    batch = len(targets)

    imgs = torch.stack([to_image_tensor(t, size, device) for t in targets])        # [B, 3, S, S]
    if any(m is not None for m in masks):
        mask = torch.stack([to_mask_tensor(m, size, device) if m is not None
                            else torch.ones(1, size, size, device=device) for m in masks])  # [B, 1, S, S]
    else:
        mask = None

    w0 = []
    for init in init_latents:
        w = start_w if init is None else torch.as_tensor(init, dtype=torch.float32).to(device)
        if w.ndim == 1 or (w.ndim == 2 and w.shape[0] == 1):
            w = w.reshape(1, style_dim).repeat(n_latent, 1)
        if w.shape != (n_latent, style_dim):
            raise ValueError(f"init latent has shape {list(w.shape)}, expected [{n_latent}, {style_dim}]")
        w0.append(w)
    latent = torch.stack(w0)                                                    # [B, n_latent, style_dim]
    if space == "w":
        latent = latent.mean(1, keepdim=True)                                    # [B, 1, style_dim]
    latent = latent.clone().requires_grad_(True)

    def as_w_plus(x: torch.Tensor) -> torch.Tensor:
        return x.expand(batch, n_latent, style_dim)

    noises: list[torch.Tensor] | None = None
    params = [latent]
    if optimize_noise:
        noises = [n.detach().repeat(batch, 1, 1, 1).clone().requires_grad_(True)
                  for n in generator.fixed_noise()]                              # each [B, 1, r, r]
        params += noises
    optimizer = torch.optim.Adam(params, lr=lr)

    target_feats = None
    if perceptual is not None and perceptual_weight > 0:
        with torch.no_grad():
            target_feats = perceptual(imgs)

    def image_loss(w_plus: torch.Tensor) -> torch.Tensor:                        # -> [B]
        img = generator.synthesis(as_w_plus(w_plus), noise=noises)               # [B, 3, S, S]
        if mask is None:
            loss = pixel_weight * (img - imgs).pow(2).mean((1, 2, 3))
        else:
            loss = pixel_weight * ((img - imgs).pow(2) * mask).sum((1, 2, 3)) \
                / (3 * mask.sum((1, 2, 3))).clamp_min(1e-8)
        if target_feats is not None:
            loss = loss + perceptual_weight * perceptual.feature_distance(perceptual(img), target_feats, mask)
        if noises is not None and noise_reg_weight > 0:
            loss = loss + noise_reg_weight * noise_regularize(noises)
        if w_spread_weight > 0 and w_plus.shape[1] > 1:
            spread = (w_plus - w_plus.mean(1, keepdim=True)).pow(2).sum(2).mean(1)
            loss = loss + w_spread_weight * spread / latent_std**2
        return loss

    with torch.no_grad():
        initial = image_loss(latent).tolist()

    # one RNG per image (seeded by its position), so results do not depend on batch_size
    rngs = [torch.Generator(device="cpu").manual_seed(seed + b) for b in range(batch)]
    history: list[list[float]] = [[] for _ in range(batch)]
    for i in range(steps):
        t = i / steps
        optimizer.param_groups[0]["lr"] = get_lr(t, lr, rampdown=lr_rampdown, rampup=lr_rampup)
        strength = latent_std * latent_noise * max(0.0, 1 - t / latent_noise_ramp) ** 2 \
            if latent_noise_ramp > 0 else 0.0
        latent_in = latent
        if strength > 0:
            kick = torch.stack([torch.randn(latent.shape[1:], generator=r) for r in rngs])
            latent_in = latent + strength * kick.to(device)
        loss = image_loss(latent_in)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()                   # sum: each image's gradient is its own
        optimizer.step()
        if noises is not None:
            _noise_normalize_(noises)
        for b, value in enumerate(loss.detach().cpu().tolist()):
            history[b].append(value)

    with torch.no_grad():
        final = image_loss(latent).tolist()
        w_plus = as_w_plus(latent)
    out = []
    for b in range(batch):
        out.append(InversionResult(
            w_plus=w_plus[b].detach().cpu().clone(), loss_history=history[b],
            initial_loss=initial[b], final_loss=final[b],
            noises=None if noises is None else [n[b:b + 1].detach().cpu().clone() for n in noises]))
    return out
