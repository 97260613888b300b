"""Checking and loading the operator's StyleGAN files once per worker process.

Nothing is downloaded: every file comes from a setting.  ``require_files`` is the start-up
check (one ConfigError naming every setting whose file is unset or missing); ``load_models``
loads what a worker needs onto its device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lookalike.errors import ConfigError
from lookalike.stylegan.directions import SMILE_SETTING, load_direction
from lookalike.stylegan.generator import CHECKPOINT_SETTING, Generator, load_generator
from lookalike.stylegan.inversion import ENCODER_SETTING, load_encoder, pick_device
from lookalike.stylegan.latents import file_fingerprint
from lookalike.stylegan.perceptual import VGG16_SETTING, VGG16Features


def require_files(files: Mapping[str, str | Path | None]) -> None:
    """``files``: {setting name: path}.  Raise one ConfigError naming each unset or missing file."""
    problems = []
    for setting, path in files.items():
        if path is None or str(path) == "":
            problems.append(f"{setting} is not set")
        elif Path(path).is_dir():
            problems.append(f"{setting}: {path} is a folder, not a file")
        elif not Path(path).is_file():
            problems.append(f"{setting}: file not found: {path}")
    if problems:
        raise ConfigError("the StyleGAN renderer needs files the operator supplies: " + "; ".join(problems),
                          advice="Set each variable to a local file, or set LOOKALIKE_RENDERER=classical.")


@dataclass
class StyleGANModels:
    generator: Generator
    latent_avg: torch.Tensor                 # [1, style_dim]
    device: torch.device
    checkpoint_fingerprint: str
    perceptual: VGG16Features | None = None
    smile_direction: np.ndarray | None = None  # [n_latent, style_dim]
    encoder: nn.Module | None = None
    vgg16_fingerprint: str = ""                # the perceptual loss's weights shape every latent


def load_models(checkpoint: str | Path, *, vgg16: str | Path | None = None,
                smile_direction: str | Path | None = None, encoder: str | Path | None = None,
                device: str = "auto") -> StyleGANModels:
    """Load the generator and whichever of the other files are given (paths checked first)."""
    files = {CHECKPOINT_SETTING: checkpoint}
    for setting, path in ((VGG16_SETTING, vgg16), (SMILE_SETTING, smile_direction), (ENCODER_SETTING, encoder)):
        if path is not None:
            files[setting] = path
    require_files(files)
    dev = pick_device(device)
    generator, latent_avg = load_generator(checkpoint, dev)
    return StyleGANModels(
        generator=generator, latent_avg=latent_avg, device=dev,
        checkpoint_fingerprint=file_fingerprint(checkpoint),
        perceptual=VGG16Features.from_file(vgg16, dev) if vgg16 is not None else None,
        smile_direction=(load_direction(smile_direction, generator.n_latent, generator.style_dim)
                         if smile_direction is not None else None),
        encoder=load_encoder(encoder, dev) if encoder is not None else None,
        vgg16_fingerprint=file_fingerprint(vgg16) if vgg16 is not None else "")
