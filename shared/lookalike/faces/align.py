"""FFHQ-style alignment: the square crop StyleGAN-era face models expect, from 68 landmarks.

The crop follows the FFHQ dataset recipe (Karras et al. 2019): its x axis is the eye-to-eye
direction corrected by the eye-to-mouth direction, its side is max(2 x eye distance,
1.8 x eye-to-mouth distance) x 2, centred a little below the eyes. Where the crop reaches past
the photo we fill with mirrored pixels faded into a blur (as FFHQ does), never black wedges.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Alignment:
    """``matrix`` (2, 3) maps photo pixels to crop pixels; ``quad`` the crop's corners in the photo."""

    matrix: np.ndarray
    quad: np.ndarray  # (4, 2): top-left, bottom-left, bottom-right, top-right
    size: int

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Photo coordinates (N, 2) → crop coordinates (N, 2)."""
        pts = np.asarray(points, dtype=np.float64)
        return (pts @ self.matrix[:, :2].T + self.matrix[:, 2]).astype(np.float32)


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the photo-left (subject's right) eye and photo-right eye, from 68 points."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quadrilateral (4, 2) in photo pixels."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = eye_centres(lm)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def alignment_for(landmarks: np.ndarray, size: int) -> Alignment:
    quad = ffhq_quad(landmarks)
    dst = np.float32([[0, 0], [0, size], [size, size]])
    matrix = cv2.getAffineTransform(quad[:3].astype(np.float32), dst)
    return Alignment(matrix=matrix, quad=quad, size=size)


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = 512) -> tuple[np.ndarray, Alignment]:
    """Crop (size, size, 3) uint8 of the face, and the transform that made it."""
    al = alignment_for(landmarks, size)
    src, matrix = _shrunk_source(rgb, al)
    crop = cv2.warpAffine(src, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
    inside = cv2.warpAffine(np.full(src.shape[:2], 255, np.uint8), matrix, (size, size),
                            flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if inside.min() == 0:
        crop = _soften_padding(crop, inside)
    return crop, al


def _shrunk_source(rgb: np.ndarray, al: Alignment) -> tuple[np.ndarray, np.ndarray]:
    """Crop the photo to the quad and pre-shrink it when the crop is much larger than ``size``.

    Affine warps sample with bilinear taps only, which aliases on strong reductions (a 12 MP
    photo into 512 px); an area resize first keeps detail without the moiré.
    """
    h, w = rgb.shape[:2]
    lo = np.floor(al.quad.min(axis=0)).astype(int) - 2
    hi = np.ceil(al.quad.max(axis=0)).astype(int) + 2
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 - x0 < 2 or y1 - y0 < 2:  # degenerate: crop lies outside; warp the whole photo
        x0, y0, x1, y1 = 0, 0, w, h
    src = rgb[y0:y1, x0:x1]
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    matrix = np.vstack([al.matrix, [0, 0, 1]]) @ shift  # crop-local → output
    side = float(np.hypot(*(al.quad[3] - al.quad[0])))
    shrink = side / al.size
    if shrink > 2.0:
        f = 1.0 / shrink * 1.5  # keep 1.5x the output resolution for the final bilinear warp
        sw, sh = max(int(src.shape[1] * f), 1), max(int(src.shape[0] * f), 1)
        fx, fy = sw / src.shape[1], sh / src.shape[0]
        src = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA)
        matrix = matrix @ np.diag([1 / fx, 1 / fy, 1])
    return np.ascontiguousarray(src), matrix[:2].astype(np.float64)


def _soften_padding(crop: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Fade mirrored padding into a blurred copy, the further from the photo the more."""
    size = crop.shape[0]
    dist = cv2.distanceTransform((inside == 0).astype(np.uint8), cv2.DIST_L2, 3)
    ramp = np.clip(dist / (0.1 * size), 0.0, 1.0)[..., None]
    k = max(int(size * 0.02) | 1, 3)
    blurred = cv2.GaussianBlur(crop, (0, 0), sigmaX=k)
    out = crop * (1.0 - ramp) + blurred * ramp
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
