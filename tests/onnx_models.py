"""Tiny stand-ins for insightface ONNX packs, exported from small torch networks.

The files have the real packs' interfaces: the detector (like ``det_10g.onnx``) takes
``input.1`` (1, 3, 640, 640) and returns 9 batch-less outputs — scores (12800, 1), (3200, 1),
(800, 1), box distances (…, 4) and key-point offsets (…, 10) for strides 8, 16, 32 with 2
anchors per cell — and the recogniser (like ``w600k_r50.onnx``) takes ``input.1``
(1, 3, 112, 112) and returns (1, 512). A pack may also hold a model of another kind (like
``2d106det.onnx``), which the backend must ignore.

The detector is a real small convolutional network, but each head's output is
``prior + mix * head(features)`` with ``mix = 0``: the outputs are exactly the priors, which a
test sets so that chosen anchors fire with known scores, distances and key points. That makes
anchor decoding, the letterbox scale-back and NMS checkable to the pixel, while the network
still costs what a small CNN costs to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

STRIDES = (8, 16, 32)
ANCHORS = 2
#: output names of insightface's det_10g.onnx, in its order (score8, score16, score32, bbox8, …)
DET_OUTPUT_NAMES = ["448", "471", "494", "451", "474", "497", "454", "477", "500"]
REC_OUTPUT_NAME = "683"


@dataclass(frozen=True)
class Fire:
    """One anchor that fires: output row ``row`` of stride ``stride``, values in stride units."""

    stride: int
    row: int
    score: float
    distances: tuple[float, float, float, float]  # left, top, right, bottom
    kps: tuple[float, ...] = (0.0,) * 10  # dx0, dy0, …, dx4, dy4


def rows_per_stride(size: int = 640) -> dict[int, int]:
    return {s: (size // s) * (size // s) * ANCHORS for s in STRIDES}


def fire_at(box: Sequence[float], kps: Sequence[Sequence[float]] | None = None, *, stride: int = 32,
            score: float = 0.9, size: int = 640, anchor: int = 0) -> Fire:
    """A Fire that decodes to ``box`` (x1, y1, x2, y2) and ``kps`` (5, 2) in canvas pixels,
    from the anchor of ``stride`` nearest the box centre."""
    x1, y1, x2, y2 = box
    width = size // stride
    cx = min(max(int(round((x1 + x2) / 2 / stride)), 0), width - 1)
    cy = min(max(int(round((y1 + y2) / 2 / stride)), 0), width - 1)
    ax, ay = cx * stride, cy * stride
    row = (cy * width + cx) * ANCHORS + anchor
    dist = ((ax - x1) / stride, (ay - y1) / stride, (x2 - ax) / stride, (y2 - ay) / stride)
    off = (0.0,) * 10
    if kps is not None:
        k = np.asarray(kps, np.float64).reshape(5, 2)
        off = tuple(((k - [ax, ay]) / stride).reshape(-1).tolist())
    return Fire(stride, row, score, dist, off)


def _torch():
    import torch
    from torch import nn

    return torch, nn


def _export(module, example, path: Path, input_names, output_names, dynamic_axes=None) -> None:
    """torch.onnx export (TorchScript exporter), then outputs renamed to ``output_names``.

    The exporter refuses purely numeric names such as det_10g's "448", so the graph is
    exported with placeholders and renamed with the ``onnx`` package.
    """
    import onnx

    torch, _ = _torch()
    module.eval()
    temp = [f"out_{i}" for i in range(len(output_names))]
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=input_names,
                          output_names=temp, dynamic_axes=dynamic_axes,
                          opset_version=17, dynamo=False)
    model = onnx.load(str(path))
    rename = dict(zip(temp, output_names))
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name in rename:
                node.output[i] = rename[name]
    for out in model.graph.output:
        out.name = rename.get(out.name, out.name)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_detector(path: Path, fires: Sequence[Fire] = (), *, size: int = 640,
                   batch_outputs: bool = False, dynamic: bool = False, seed: int = 0) -> Path:
    """A SCRFD-shaped detector whose outputs are exactly the priors set by ``fires``.

    ``batch_outputs`` gives outputs a leading batch dimension of 1 ((1, N, C), as some
    exports have); ``dynamic`` exports the input's height and width as symbolic (det_10g's
    own input is ``[1, 3, '?', '?']``).
    """
    torch, nn = _torch()
    torch.manual_seed(seed)
    rows = rows_per_stride(size)
    priors = {s: [np.zeros((rows[s], 1), np.float32), np.ones((rows[s], 4), np.float32),
                  np.zeros((rows[s], 10), np.float32)] for s in STRIDES}
    for f in fires:
        score, dist, kps = priors[f.stride]
        score[f.row, 0] = f.score
        dist[f.row] = f.distances
        kps[f.row] = f.kps

    class TinyScrfd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(  # stride 8, 16 channels
                nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
            self.down = nn.ModuleList([nn.Conv2d(16, 16, 3, 2, 1), nn.Conv2d(16, 16, 3, 2, 1)])
            self.heads = nn.ModuleList([nn.ModuleList([nn.Conv2d(16, ANCHORS * c, 1) for c in (1, 4, 10)])
                                        for _ in STRIDES])
            for s in STRIDES:
                for name, prior in zip(("score", "bbox", "kps"), priors[s]):
                    self.register_buffer(f"{name}{s}", torch.from_numpy(prior))
            self.register_buffer("mix", torch.zeros(()))

        def forward(self, x):
            feats = [self.stem(x)]
            for down in self.down:
                feats.append(torch.relu(down(feats[-1])))
            outs: list = [[], [], []]
            for feat, heads, s in zip(feats, self.heads, STRIDES):
                for k, (head, name, c) in enumerate(zip(heads, ("score", "bbox", "kps"), (1, 4, 10))):
                    y = head(feat).permute(0, 2, 3, 1).reshape(-1, c)  # (H*W*A, C), anchors adjacent
                    if name == "score":
                        y = torch.sigmoid(y)
                    y = getattr(self, f"{name}{s}") + self.mix * y
                    outs[k].append(y.unsqueeze(0) if batch_outputs else y)
            return tuple(outs[0] + outs[1] + outs[2])

    dyn = {"input.1": {2: "height", 3: "width"}} if dynamic else None
    _export(TinyScrfd(), torch.zeros(1, 3, size, size), path, ["input.1"], DET_OUTPUT_NAMES, dyn)
    return path


def build_recogniser(path: Path, *, dim: int = 512, seed: int = 0, probe: bool = False) -> Path:
    """An ArcFace-shaped recogniser: ``input.1`` (1, 3, 112, 112) → (1, dim).

    ``probe=True`` makes a model that reports its input instead of an identity: output
    [mean of channel 0, 1, 2, 1.0, 0, …], so after normalisation ``e[:3] / e[3]`` are the
    per-channel means of the normalised crop the backend fed it.
    """
    torch, nn = _torch()
    torch.manual_seed(seed)

    class TinyArcFace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 16, 3, 2, 1), nn.PReLU(16), nn.Conv2d(16, 32, 3, 2, 1), nn.PReLU(32),
                nn.Conv2d(32, 32, 3, 2, 1), nn.PReLU(32), nn.AdaptiveAvgPool2d(7), nn.Flatten())
            self.fc = nn.Linear(32 * 49, dim)
            self.bn = nn.BatchNorm1d(dim)

        def forward(self, x):
            return self.bn(self.fc(self.body(x)))

    class Probe(nn.Module):
        def forward(self, x):
            means = x.mean(dim=(2, 3))  # (1, 3)
            row = torch.cat([means, means[:, :1] * 0 + 1], dim=1)
            return torch.nn.functional.pad(row, (0, dim - 4))

    _export(Probe() if probe else TinyArcFace(), torch.zeros(1, 3, 112, 112), path,
            ["input.1"], [REC_OUTPUT_NAME])
    return path


def build_other(path: Path) -> Path:
    """A model of another kind (like 2d106det.onnx: 192 x 192 in, (1, 212) out)."""
    torch, nn = _torch()
    torch.manual_seed(1)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, 4, 1), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 212))
    _export(module, torch.zeros(1, 3, 192, 192), path, ["data"], ["fc1"])
    return path


def build_pack(folder: Path, fires: Sequence[Fire] = (), *, detector: str = "det_10g.onnx",
               recogniser: str = "w600k_r50.onnx", other: bool = True, probe: bool = False,
               **detector_kwargs) -> Path:
    """A folder laid out like buffalo_l, with tiny models."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_detector(folder / detector, fires, **detector_kwargs)
    build_recogniser(folder / recogniser, probe=probe)
    if other:
        build_other(folder / "2d106det.onnx")
    return folder


def typical_crop_fire(landmarks: np.ndarray, crop_size: int, canvas: int = 640) -> Fire:
    """A Fire on the face of an FFHQ crop: the landmarks' box and 5 points, in canvas pixels."""
    from lookalike.faces.arcface import keypoints5_from_68

    scale = canvas / crop_size  # a square crop fills the square canvas
    lm = np.asarray(landmarks, np.float64) * scale
    box = (*lm.min(axis=0), *lm.max(axis=0))
    return fire_at(box, keypoints5_from_68(lm), stride=32, score=0.95, size=canvas)
