"""Plain data the face stage hands to the rest of the product (no dlib or ONNX types)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the photo it was found in (x right, y down)."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def scaled(self, factor: float) -> "Box":
        return Box(self.left * factor, self.top * factor, self.right * factor,
                   self.bottom * factor, self.score)

    def to_list(self) -> list[float]:
        return [round(v, 1) for v in (self.left, self.top, self.right, self.bottom)]


@dataclass(frozen=True)
class Detection:
    """What a detector reports: a box and, for detectors that give them, 5 key points (5,2)."""

    box: Box
    keypoints5: np.ndarray | None = None


@dataclass
class FaceAnalysis:
    """Everything later stages need about the chosen face of one photo.

    ``landmarks`` are the 68 iBUG points in photo pixels; ``aligned`` is the FFHQ-style square
    crop (S, S, 3) uint8 and ``aligned_landmarks`` the same 68 points in crop pixels;
    ``embedding`` is unit-length float32 (D,), made by ``model``.
    """

    box: Box
    faces_seen: int
    landmarks: np.ndarray
    aligned: np.ndarray
    aligned_landmarks: np.ndarray
    embedding: np.ndarray
    model: str
    image_size: tuple[int, int]  # (width, height) of the decoded photo
    quality: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-safe description (no pixels, no embedding: those are biometric data)."""
        return {
            "box": self.box.to_list(),
            "detection_score": round(self.box.score, 3),
            "faces_seen": self.faces_seen,
            "landmarks": int(len(self.landmarks)),
            "image_size": list(self.image_size),
            "model": self.model,
            "quality": self.quality,
        }
