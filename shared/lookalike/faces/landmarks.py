"""The 68 iBUG landmarks of a face (dlib's shape predictor), shared by every backend.

Morphing needs the 68 points whatever model found the face, so this is not part of the
backend interface: ONNX packs give 5 key points only.
"""

from __future__ import annotations

import numpy as np

from lookalike.faces.dlib_models import shape_predictor_68
from lookalike.faces.types import Box


def to_dlib_rect(box: Box):
    import dlib

    return dlib.rectangle(int(round(box.left)), int(round(box.top)),
                          int(round(box.right)), int(round(box.bottom)))


def landmarks68(rgb: np.ndarray, box: Box) -> np.ndarray:
    """(68, 2) float32 points (x, y) in ``rgb`` pixels for the face in ``box``."""
    shape = shape_predictor_68()(rgb, to_dlib_rect(box))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def to_dlib_shape(box: Box, points: np.ndarray):
    """A dlib full_object_detection from our plain arrays (for dlib's encoder)."""
    import dlib

    parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in points])
    return dlib.full_object_detection(to_dlib_rect(box), parts)
