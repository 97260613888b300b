"""SCRFD face detection (insightface's ``det_*.onnx``): pre-processing and output decoding.

The network sees a fixed-size canvas (640 x 640 in insightface packs): the photo is resized
keeping its aspect ratio and placed in the top-left corner, the rest is black. For each
feature stride (8, 16, 32) and each of its anchors (2 per cell) it outputs a face score, the
distances from the anchor centre to the box's four sides and the offsets of 5 key points
(eyes, nose tip, mouth corners), all in units of the stride. Decoding follows insightface's
``model_zoo/scrfd.py``, so a real pack gives the boxes insightface gives.

Everything here is numpy; the ONNX session is one callable, so tests can check the maths
without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from lookalike.errors import ConfigError

#: insightface's defaults for its packs (``SCRFD.detect(threshold=0.5)``, ``nms_threshold``)
DET_THRESH = 0.5
NMS_THRESH = 0.4
#: canvas size used when the model's input shape is dynamic (insightface's ``det_size``)
DEFAULT_INPUT_SIZE = (640, 640)  # (width, height)

#: (number of outputs) → (strides, anchors per cell, has key points): insightface's layouts
LAYOUTS: dict[int, tuple[tuple[int, ...], int, bool]] = {
    6: ((8, 16, 32), 2, False),
    9: ((8, 16, 32), 2, True),
    10: ((8, 16, 32, 64, 128), 1, False),
    15: ((8, 16, 32, 64, 128), 1, True),
}


# --- pre-processing -------------------------------------------------------------------------

def letterbox(rgb: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The detector's canvas (H, W, 3) uint8 and the factor photo pixels were multiplied by.

    ``input_size`` is (width, height). The photo keeps its aspect ratio, fills the canvas in
    one direction and sits in the top-left corner, so canvas / factor = photo coordinates.
    """
    in_w, in_h = input_size
    h, w = rgb.shape[:2]
    if h / w > in_h / in_w:
        new_h = in_h
        new_w = max(1, int(new_h / (h / w)))
    else:
        new_w = in_w
        new_h = max(1, int(new_w * (h / w)))
    scale = new_h / h
    canvas = np.zeros((in_h, in_w, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
    return canvas, scale


def to_blob(canvas_rgb: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float32 in RGB order, (x - 127.5) / 128 as SCRFD was trained.

    insightface reads BGR photos and swaps to RGB in ``blobFromImage``; ours are RGB already.
    """
    x = (canvas_rgb.astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


# --- decoding -------------------------------------------------------------------------------

def anchor_centres(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """(height * width * num_anchors, 2) anchor centres (x, y) in canvas pixels.

    Row order is the network's: cells row by row, the anchors of one cell next to each other.
    """
    ys, xs = np.mgrid[:height, :width]
    centres = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    if num_anchors > 1:
        centres = np.repeat(centres, num_anchors, axis=0)
    return centres


def distance2bbox(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) x1, y1, x2, y2 from centres (N, 2) and distances (N, 4) left, top, right, bottom."""
    return np.stack([points[:, 0] - distance[:, 0], points[:, 1] - distance[:, 1],
                     points[:, 0] + distance[:, 2], points[:, 1] + distance[:, 3]], axis=-1)


def distance2kps(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Key points (N, K, 2) from centres (N, 2) and offsets (N, 2K) dx0, dy0, dx1, dy1, …"""
    offsets = distance.reshape(len(distance), distance.shape[1] // 2, 2)
    return points[:, None, :] + offsets


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESH) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    A box is dropped when its overlap (intersection over union) with a better kept box is
    above ``threshold``. Areas count pixels inclusively (``x2 - x1 + 1``), as insightface does,
    so a real pack keeps exactly the boxes insightface keeps.
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return keep


@dataclass(frozen=True)
class RawDetections:
    """Decoded detections in canvas pixels, before the scale back to the photo."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    kps: np.ndarray | None  # (N, 5, 2) float32, or None for models without key points


def decode(outputs: Sequence[np.ndarray], canvas_hw: tuple[int, int], *,
           threshold: float = DET_THRESH) -> RawDetections:
    """Scores, boxes and key points above ``threshold`` from the network's raw outputs.

    ``outputs`` come in insightface's order: the scores of every stride, then the box
    distances of every stride, then (when present) the key-point offsets. Shapes may carry a
    batch dimension of 1 or not: (N, 1) and (1, N, 1) are read alike.
    """
    if len(outputs) not in LAYOUTS:
        raise ConfigError(f"the detector has {len(outputs)} outputs; SCRFD models have 6, 9, 10 or 15")
    strides, num_anchors, with_kps = LAYOUTS[len(outputs)]
    fmc = len(strides)
    in_h, in_w = canvas_hw
    boxes, scores, kpss = [], [], []
    for idx, stride in enumerate(strides):
        height, width = in_h // stride, in_w // stride
        centres = anchor_centres(height, width, stride, num_anchors)
        score = _rows(outputs[idx], 1, len(centres), f"scores of stride {stride}")[:, 0]
        dist = _rows(outputs[idx + fmc], 4, len(centres), f"boxes of stride {stride}") * stride
        pos = np.where(score >= threshold)[0]
        scores.append(score[pos])
        boxes.append(distance2bbox(centres[pos], dist[pos]))
        if with_kps:
            off = _rows(outputs[idx + 2 * fmc], 10, len(centres), f"key points of stride {stride}")
            kpss.append(distance2kps(centres[pos], off[pos] * stride))
    return RawDetections(
        boxes=np.concatenate(boxes).astype(np.float32).reshape(-1, 4),
        scores=np.concatenate(scores).astype(np.float32),
        kps=np.concatenate(kpss).astype(np.float32).reshape(-1, 5, 2) if with_kps else None,
    )


def _rows(array: np.ndarray, columns: int, expected: int, what: str) -> np.ndarray:
    a = np.asarray(array, dtype=np.float32)
    if a.size != expected * columns or a.shape[-1] != columns:
        raise ConfigError(f"the detector's {what} have shape {a.shape}; expected ({expected}, {columns}) "
                          "— is this an insightface SCRFD model with outputs in its usual order?")
    return a.reshape(expected, columns)


def detect(rgb: np.ndarray, run: Callable[[np.ndarray], Sequence[np.ndarray]],
           input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, *, threshold: float = DET_THRESH,
           nms_threshold: float = NMS_THRESH) -> RawDetections:
    """Faces in ``rgb`` in its own pixels, best score first, after non-maximum suppression.

    ``run`` maps the (1, 3, H, W) blob to the network's outputs (an ONNX session's run).
    """
    canvas, scale = letterbox(rgb, input_size)
    raw = decode(run(to_blob(canvas)), canvas.shape[:2], threshold=threshold)
    keep = nms(raw.boxes, raw.scores, nms_threshold)
    return RawDetections(boxes=raw.boxes[keep] / scale, scores=raw.scores[keep],
                         kps=None if raw.kps is None else raw.kps[keep] / scale)
