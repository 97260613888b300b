"""VGG16 features and an LPIPS-style perceptual distance, from a weights file the operator supplies.

The conv stack is defined here with the key layout of torchvision's ``vgg16().features``
(``features.0.weight`` ... ``features.28.bias``), so no torchvision import is needed and a
torchvision ImageNet state_dict loads as is.  The distance follows LPIPS (Zhang et al. 2018):
activations after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 are unit-normalised over
channels, squared differences are weighted per channel (all ones, or LPIPS ``lin`` weights when
the file carries them), summed over channels, averaged over space and summed over layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from lookalike.errors import ConfigError

VGG16_SETTING = "LOOKALIKE_STYLEGAN_VGG16"

# torchvision vgg16 "D" config: channel counts, "M" = max-pool
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# indices in ``features`` right after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_TAPS = (3, 8, 15, 22, 29)
_TAP_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS ScalingLayer: ImageNet mean/std expressed for inputs in [-1, 1]
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = v
    return nn.Sequential(*layers)


class VGG16Features(nn.Module):
    """Images [B, 3, H, W] in [-1, 1] -> five feature maps; ``distance`` gives [B] LPIPS-style."""

    def __init__(self, resize: int | None = 256) -> None:
        super().__init__()
        self.features = _vgg16_features()[: _TAPS[-1] + 1]      # up to relu5_3
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        for i, c in enumerate(_TAP_CHANNELS):
            self.register_buffer(f"lin{i}", torch.ones(1, c, 1, 1))
        self.resize = resize
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu", *,
                  setting: str = VGG16_SETTING, resize: int | None = 256) -> VGG16Features:
        """Load VGG16 conv weights (torchvision ``vgg16`` or ``vgg16().features`` state_dict).

        LPIPS linear weights are used too when the file holds ``lin0.model.1.weight`` ...
        ``lin4.model.1.weight`` (the layout of LPIPS's own ``vgg.pth``).  Missing or
        incompatible files raise ConfigError naming ``path`` and ``setting``.
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{setting}: VGG16 weights not found: {path}",
                              advice="Supply a torchvision vgg16 state_dict file; nothing is downloaded.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - torch's text (incl. "set weights_only=False") misleads here
            raise ConfigError(f"{setting}: {path} is not a readable PyTorch weights file (empty, "
                              "truncated, or another format)",
                              advice="Supply a torchvision vgg16 state_dict saved with torch.save.") from None
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise ConfigError(f"{setting}: {path} does not hold a state_dict")
        model = cls(resize=resize)
        try:
            model.load_weights(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            reason = (exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)).strip()
            raise ConfigError(f"{setting}: {path} is not a VGG16 weights file: "
                              f"{' '.join(reason.splitlines()[:3])}") from None
        return model.to(device).eval()

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load conv weights from ``features.N.*`` or bare ``N.*`` keys (classifier keys ignored)."""
        conv: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            name = key.removeprefix("module.").removeprefix("net.")
            name = name.removeprefix("features.") if name.startswith("features.") else name
            head = name.split(".", 1)[0]
            if head.isdigit() and int(head) <= _TAPS[-1]:
                conv[name] = value
        expected = set(self.features.state_dict())
        missing = sorted(expected - set(conv))
        if missing:
            raise KeyError(f"missing {len(missing)} conv tensors, e.g. features.{missing[0]}")
        self.features.load_state_dict({k: conv[k] for k in expected}, strict=True)
        for i, c in enumerate(_TAP_CHANNELS):
            lin = state.get(f"lin{i}.model.1.weight")
            if lin is not None:
                if tuple(lin.shape) != (1, c, 1, 1):
                    raise ValueError(f"lin{i}.model.1.weight has shape {list(lin.shape)}, expected [1, {c}, 1, 1]")
                getattr(self, f"lin{i}").copy_(lin)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[B, 3, H, W] in [-1, 1] -> [relu1_2, relu2_2, relu3_3, relu4_3, relu5_3] activations."""
        x = images
        if self.resize is not None and x.shape[-1] > self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="area")   # [B, 3, 256, 256]
        x = (x - self.shift) / self.scale
        taps = []
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in _TAPS:
                taps.append(x)
        return taps

    def feature_distance(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor],
                         mask: torch.Tensor | None = None) -> torch.Tensor:
        """Distance between two ``forward`` outputs.  ``mask`` [B or 1, 1, H, W] weights space.  -> [B]"""
        total = 0.0
        for i, (fa, fb) in enumerate(zip(feats_a, feats_b)):
            fa = fa * torch.rsqrt(fa.pow(2).sum(1, keepdim=True) + 1e-20)
            fb = fb * torch.rsqrt(fb.pow(2).sum(1, keepdim=True) + 1e-20)
            d = ((fa - fb).pow(2) * getattr(self, f"lin{i}")).sum(1, keepdim=True)   # [B, 1, h, w]
            if mask is None:
                total = total + d.mean((1, 2, 3))
            else:
                m = F.interpolate(mask, size=d.shape[-2:], mode="area")
                total = total + (d * m).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1e-8)
        return total

    def distance(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """LPIPS-style distance between image batches in [-1, 1].  -> [B]"""
        if mask is not None and self.resize is not None and mask.shape[-1] > self.resize:
            mask = F.interpolate(mask, size=(self.resize, self.resize), mode="area")
        return self.feature_distance(self(a), self(b), mask)
