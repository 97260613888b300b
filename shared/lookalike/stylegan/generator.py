"""StyleGAN2 generator (config-f, Karras et al. 2020), in the checkpoint layout of the rosinality port.

Read top to bottom: resampling (``upfirdn2d``), the activation, the small layers named as in
the paper and the port (``EqualLinear``, ``ModulatedConv2d``, ``StyledConv``, ``ToRGB``,
``ConstantInput``), the ``Generator`` that stacks them, and ``load_generator``, which reads an
operator-supplied checkpoint and works out the architecture from the shapes in it.

Everything is plain PyTorch (no compiled CUDA extensions), so the same code runs on CPU and on
CUDA. Parameter and buffer names match the rosinality ``Generator`` state_dict exactly, so a
checkpoint (``{"g_ema": state_dict, "latent_avg": ...}``, e.g. ``stylegan2-ffhq-config-f.pt``
as used by e4e, pSp and ReStyle) loads with ``strict=True``.

Conventions (see ``fixtures/stylegan2/README.md``):
- images are NCHW float32, RGB, roughly [-1, 1] for a trained model, not clamped;
- z is ``[B, style_dim]``; W is ``[B, style_dim]``; W+ is ``[B, n_latent, style_dim]`` with
  ``n_latent = 2 * log2(size) - 2``;
- weights are stored unscaled and multiplied by ``1/sqrt(fan_in)`` when used (equalised
  learning rate); the mapping network also multiplies weights and biases by ``lr_mul=0.01``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from lookalike.errors import ConfigError

CHECKPOINT_SETTING = "LOOKALIKE_STYLEGAN_CHECKPOINT"
BLUR_KERNEL = (1, 3, 3, 1)


def config_f_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """The config-f channel table: resolution -> feature maps."""
    return {
        4: 512, 8: 512, 16: 512, 32: 512,
        64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
        256: 64 * channel_multiplier, 512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }


# --- resampling ---------------------------------------------------------------------------

def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Separable FIR filter from its 1-D taps: outer product, normalised to sum 1.  [K, K]"""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter, downsample (pure PyTorch).

    ``x`` [B, C, H, W]; ``kernel`` [kh, kw]; ``pad`` = (before, after), the same on both axes
    (a negative value crops).  Output [B, C, (H*up + p0 + p1 - kh) // down + 1, ...].
    """
    batch, channels, in_h, in_w = x.shape
    pad0, pad1 = pad
    kh, kw = kernel.shape
    if up > 1:  # [B, C, H, W] -> [B, C, H*up, W*up], zeros between samples
        x = x.reshape(batch, channels, in_h, 1, in_w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, in_h * up, in_w * up)
    x = F.pad(x, [max(pad0, 0), max(pad1, 0), max(pad0, 0), max(pad1, 0)])
    x = x[:, :, max(-pad0, 0): x.shape[2] - max(-pad1, 0), max(-pad0, 0): x.shape[3] - max(-pad1, 0)]
    # true convolution = correlation with the flipped kernel, one filter per channel
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw).expand(channels, 1, kh, kw)
    x = F.conv2d(x, weight, groups=channels)
    return x[:, :, ::down, ::down]


class Upsample(nn.Module):
    """2x upsampling with an FIR filter (used on the toRGB skip path).  [B,C,H,W] -> [B,C,2H,2W]"""

    def __init__(self, kernel: Sequence[int] = BLUR_KERNEL, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    """FIR low-pass filter applied after a transposed conv (its gain restores the energy)."""

    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


# --- activation ---------------------------------------------------------------------------

def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None,
                     negative_slope: float = 0.2, scale: float = math.sqrt(2)) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2); ``bias`` is per channel (dim 1)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


# --- layers -------------------------------------------------------------------------------

class PixelNorm(nn.Module):
    """Divide each vector by its RMS over dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight * lr_mul / sqrt(in_dim), bias * lr_mul."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    """Conv whose input channels are scaled per sample by an affine map of the style.

    With ``demodulate`` each output filter is renormalised to unit norm (all 3x3 convs);
    toRGB (1x1) is not demodulated.  With ``upsample`` the conv is a stride-2 transposed conv
    followed by a [1,3,3,1] blur.  Runs the whole batch as one grouped convolution.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[int] = BLUR_KERNEL) -> None:
        super().__init__()
        self.eps = 1e-8
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1),
                             upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channel, height, width = x.shape
        k = self.kernel_size
        s = self.modulation(style).view(batch, 1, in_channel, 1, 1)          # [B, 1, I, 1, 1]
        weight = self.scale * self.weight * s                                  # [B, O, I, k, k]
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)       # [B, O]
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        x = x.reshape(1, batch * in_channel, height, width)                    # [1, B*I, H, W]
        if self.upsample:
            # transposed conv wants [in, out/groups, k, k] per group
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)  # [1, B*O, 2H+1, 2W+1]
            out = out.view(batch, self.out_channel, out.shape[2], out.shape[3])
            return self.blur(out)                                              # [B, O, 2H, 2W]
        weight = weight.reshape(batch * self.out_channel, in_channel, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)          # [1, B*O, H, W]
        return out.view(batch, self.out_channel, height, width)


class NoiseInjection(nn.Module):
    """Adds a learned per-layer strength times single-channel noise (fresh noise if none given)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            batch, _, height, width = image.shape
            noise = image.new_empty(batch, 1, height, width).normal_()
        return image + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis network starts from.  -> [B, C4, 4, 4]"""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.input.repeat(latent.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated 3x3 conv, then noise, then bias + leaky ReLU."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[int] = BLUR_KERNEL) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) plus the upsampled skip from below."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[int] = BLUR_KERNEL) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias                                  # [B, 3, H, W]
        if skip is not None:
            out = out + self.upsample(skip)                                    # [B, 3, H/2, W/2] -> [B, 3, H, W]
        return out


# --- the generator ------------------------------------------------------------------------

class Generator(nn.Module):
    """Mapping network (``style``) + synthesis network, as in the rosinality port.

    ``channels`` maps each resolution 4, 8, ..., size to its feature-map count; by default the
    config-f table.  ``forward`` keeps the port's signature (note its ``randomize_noise=True``
    default); ``synthesis`` is the plain W+ -> image call this project uses, deterministic by
    default (it uses the checkpoint's fixed noise buffers).
    """

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int = 2,
                 blur_kernel: Sequence[int] = BLUR_KERNEL, lr_mlp: float = 0.01,
                 channels: Mapping[int, int] | None = None) -> None:
        super().__init__()
        log_size = int(math.log2(size))
        if size < 8 or 2**log_size != size:
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.log_size = log_size
        self.num_layers = (log_size - 2) * 2 + 1        # noise inputs
        self.n_latent = log_size * 2 - 2                # W+ rows

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)],
        )

        table = dict(config_f_channels(channel_multiplier))
        if channels is not None:
            table.update({int(r): int(c) for r, c in channels.items()})
        self.channels = {2**i: table[2**i] for i in range(2, log_size + 1)}

        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)           # 4, 8, 8, 16, 16, ...
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = self.channels[4]
        for i in range(3, log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel

    # -- latents --

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping network: z [B, style_dim] -> W [B, style_dim]."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n_latent: int = 4096, seed: int | None = None) -> torch.Tensor:
        """Mean W of ``n_latent`` random z.  -> [1, style_dim]"""
        device = self.input.input.device
        gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        z = torch.randn(n_latent, self.style_dim, device=device, generator=gen)
        return self.style(z).mean(0, keepdim=True)

    def make_noise(self, batch: int = 1) -> list[torch.Tensor]:
        """Fresh N(0,1) noise maps, one per layer, shapes [batch, 1, r, r]."""
        device = self.input.input.device
        return [torch.randn(batch, 1, n.shape[2], n.shape[3], device=device) for n in self.fixed_noise()]

    def fixed_noise(self) -> list[torch.Tensor]:
        """The checkpoint's noise buffers, ``noises.noise_0 .. noise_{num_layers-1}``."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    # -- synthesis --

    def synthesis(self, latent: torch.Tensor,
                  noise: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """W+ [B, n_latent, style_dim] (or W [B, style_dim]) -> image [B, 3, size, size].

        ``noise``: one map per layer (``None`` entries draw fresh noise); default the fixed buffers.
        """
        if latent.ndim == 2:
            latent = latent.unsqueeze(1).repeat(1, self.n_latent, 1)
        if latent.ndim != 3 or latent.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(f"expected W+ of shape [B, {self.n_latent}, {self.style_dim}], "
                             f"got {list(latent.shape)}")
        if noise is None:
            noise = self.fixed_noise()
        if len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise maps, got {len(noise)}")

        out = self.input(latent)                                   # [B, C4, 4, 4]
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])                     # [B, 3, 4, 4]
        i = 1
        for conv_up, conv, noise1, noise2, to_rgb in zip(
                self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs):
            out = conv_up(out, latent[:, i], noise=noise1)         # [B, C, 2r, 2r]
            out = conv(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)             # [B, 3, 2r, 2r]
            i += 2
        return skip

    def forward(self, styles: Sequence[torch.Tensor], return_latents: bool = False,
                inject_index: int | None = None, truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None, input_is_latent: bool = False,
                noise: Sequence[torch.Tensor | None] | None = None,
                randomize_noise: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The port's call: ``g([z])``, ``g([w_plus], input_is_latent=True)``, style mixing with
        two styles and ``inject_index``.  Returns ``(image, W+ used or None)``."""
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.fixed_noise()
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (the checkpoint's latent_avg)")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if len(styles) < 2:
            latent = styles[0]
            if latent.ndim < 3:
                latent = latent.unsqueeze(1).repeat(1, self.n_latent, 1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = torch.cat([styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                                styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)], 1)

        image = self.synthesis(latent, noise=noise)
        return image, (latent if return_latents else None)


# --- loading an operator's checkpoint -----------------------------------------------------

@dataclass(frozen=True)
class GeneratorConfig:
    size: int
    style_dim: int
    n_mlp: int
    channels: dict[int, int]

    @property
    def n_latent(self) -> int:
        return 2 * int(math.log2(self.size)) - 2


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> GeneratorConfig:
    """Work out size, style_dim, n_mlp and the channel table from a g_ema state_dict's shapes."""
    try:
        style_dim = int(state_dict["conv1.conv.modulation.weight"].shape[1])
        n_mlp = sum(1 for k in state_dict if re.fullmatch(r"style\.\d+\.weight", k))
        rgb_blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"to_rgbs\.(\d+)\.", k))}
        log_size = len(rgb_blocks) + 2
        channels = {4: int(state_dict["input.input"].shape[1])}
        for b in range(len(rgb_blocks)):
            channels[2 ** (b + 3)] = int(state_dict[f"convs.{2 * b}.conv.weight"].shape[1])
    except (KeyError, IndexError) as exc:
        raise ValueError(f"not a StyleGAN2 generator state_dict (missing {exc})") from None
    if n_mlp == 0:
        raise ValueError("not a StyleGAN2 generator state_dict (no mapping layers style.N.weight)")
    for key, tensor in state_dict.items():
        if key.endswith(".kernel") and tuple(tensor.shape) != (4, 4):
            raise ValueError(f"{key} has shape {list(tensor.shape)}; only the [1,3,3,1] blur kernel is supported")
    return GeneratorConfig(size=2**log_size, style_dim=style_dim, n_mlp=n_mlp, channels=channels)


def generator_from_state_dict(state_dict: Mapping[str, torch.Tensor], lr_mlp: float = 0.01) -> Generator:
    """Build a Generator shaped like ``state_dict`` and load it strictly."""
    cfg = infer_config(state_dict)
    g = Generator(cfg.size, cfg.style_dim, cfg.n_mlp, lr_mlp=lr_mlp, channels=cfg.channels)
    g.load_state_dict(state_dict, strict=True)
    return g


def load_generator(path: str | Path, device: str | torch.device = "cpu", *,
                   setting: str = CHECKPOINT_SETTING,
                   lr_mlp: float = 0.01) -> tuple[Generator, torch.Tensor]:
    """Load ``{"g_ema": state_dict, "latent_avg": ...}`` -> (Generator in eval mode, latent_avg [1, style_dim]).

    Raises ConfigError naming ``path`` and ``setting`` when the file is missing or is not a
    compatible checkpoint.  A checkpoint without ``latent_avg`` (a training checkpoint of the
    port) gets the mean W of 4096 fixed-seed z instead.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{setting}: StyleGAN2 checkpoint not found: {path}",
                          advice="Point the setting at a generator checkpoint you supply "
                                 "(rosinality layout, e.g. stylegan2-ffhq-config-f.pt); nothing is downloaded.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch's text (incl. "set weights_only=False") misleads here
        raise ConfigError(f"{setting}: {path} is not a readable PyTorch checkpoint (empty, "
                          "truncated, or another format)",
                          advice="Supply a rosinality-layout generator checkpoint saved with "
                                 "torch.save; never load untrusted pickles.") from None
    if not isinstance(ckpt, Mapping) or "g_ema" not in ckpt:
        found = sorted(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ConfigError(f"{setting}: {path} has no 'g_ema' entry (found {found}); "
                          "expected the rosinality checkpoint layout {'g_ema': state_dict, 'latent_avg': ...}")
    try:
        g = generator_from_state_dict(ckpt["g_ema"], lr_mlp=lr_mlp)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[:3]  # torch lists every mismatched tensor
        raise ConfigError(f"{setting}: {path} is not a compatible StyleGAN2 generator: "
                          + " ".join(line.strip() for line in first)) from None
    g = g.to(device).eval().requires_grad_(False)

    latent_avg = ckpt.get("latent_avg")
    if latent_avg is None:
        latent_avg = g.mean_latent(4096, seed=0)
    latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32).to(device)
    if latent_avg.numel() != g.style_dim:
        raise ConfigError(f"{setting}: {path}: latent_avg has shape {list(latent_avg.shape)}, "
                          f"expected [1, {g.style_dim}]")
    return g, latent_avg.reshape(1, g.style_dim)
