"""Photo in, chosen face out: detect on a reduced copy, pick the largest, landmark, align, embed."""

from __future__ import annotations

import time

import cv2
import numpy as np

from lookalike.errors import FaceTooSmall, NoFace
from lookalike.faces.align import align_face
from lookalike.faces.backend import FaceBackend, get_backend
from lookalike.faces.landmarks import landmarks68
from lookalike.faces.types import Box, Detection, FaceAnalysis


#: Detections scoring below this are counted as "seen" only when nothing better exists: dlib's
#: HOG reports badges, patches and the like around 0.0–0.2 and real faces mostly above 0.5.
CONFIDENT_SCORE = 0.3


def detect_faces(rgb: np.ndarray, *, backend: FaceBackend | None = None,
                 max_side: int = 1024) -> list[Detection]:
    """All faces in ``rgb``, most prominent first, boxes in ``rgb`` pixels.

    Detection runs on a copy whose long side is at most ``max_side``: HOG cost grows with
    pixels, and faces worth matching stay above its 80 px minimum at that size. If the
    reduced copy shows no face, one more pass at twice the size catches small faces in big
    group photos; photos with a face (the common case) never pay for it.
    """
    backend = backend or get_backend()
    dets = _detect_scaled(rgb, backend, max_side)
    if not dets and max(rgb.shape[:2]) > max_side:
        dets = _detect_scaled(rgb, backend, max_side * 2)
    dets.sort(key=prominence, reverse=True)
    return dets


def prominence(det: Detection) -> float:
    """Area, discounted for weak detections so a badge the size of a face never wins."""
    return det.box.area * min(1.0, max(det.box.score, 0.0) / 0.5)


def _detect_scaled(rgb: np.ndarray, backend: FaceBackend, max_side: int) -> list[Detection]:
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    found = backend.detect(small)
    back = 1.0 / scale
    dets = []
    for d in found:
        box = d.box.scaled(back)
        box = Box(max(box.left, 0.0), max(box.top, 0.0), min(box.right, w - 1.0),
                  min(box.bottom, h - 1.0), box.score)
        kps = None if d.keypoints5 is None else np.asarray(d.keypoints5, np.float32) * back
        dets.append(Detection(box, kps))
    return dets


def analyze_face(rgb: np.ndarray, *, backend: FaceBackend | None = None, max_side: int = 1024,
                 min_face_px: int = 48, align_size: int = 512) -> FaceAnalysis:
    """The largest face of ``rgb`` with landmarks, aligned crop and embedding.

    Raises ``NoFace`` when nothing is found and ``FaceTooSmall`` when the largest face is
    narrower than ``min_face_px`` photo pixels (too little detail for a fair match).
    """
    backend = backend or get_backend()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    dets = detect_faces(rgb, backend=backend, max_side=max_side)
    timings["detect"] = time.perf_counter() - t
    if not dets:
        raise NoFace("no face was found in the photo")
    chosen = dets[0]
    if chosen.box.width < min_face_px:
        raise FaceTooSmall(f"the face is {chosen.box.width:.0f} px wide; at least {min_face_px} px is needed")

    t = time.perf_counter()
    points = landmarks68(rgb, chosen.box)
    timings["landmarks"] = time.perf_counter() - t

    t = time.perf_counter()
    aligned, alignment = align_face(rgb, points, align_size)
    timings["align"] = time.perf_counter() - t

    t = time.perf_counter()
    embedding = backend.embed(rgb, chosen, points)
    timings["embed"] = time.perf_counter() - t

    h, w = rgb.shape[:2]
    return FaceAnalysis(
        box=chosen.box,
        faces_seen=max(1, sum(d.box.score >= CONFIDENT_SCORE for d in dets)),
        landmarks=points,
        aligned=aligned,
        aligned_landmarks=alignment.apply(points),
        embedding=embedding,
        model=backend.model_id,
        image_size=(w, h),
        quality=face_quality(aligned, chosen.box, (w, h)),
        timings=timings,
    )


def face_quality(aligned: np.ndarray, box: Box, image_size: tuple[int, int]) -> dict:
    """Cheap indicators an operator can threshold: size, sharpness, exposure."""
    grey = cv2.cvtColor(cv2.resize(aligned, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    centre = grey[64:192, 64:192]
    return {
        "face_width_px": round(box.width, 1),
        "face_fraction": round(box.area / float(image_size[0] * image_size[1]), 4),
        "sharpness": round(float(cv2.Laplacian(centre, cv2.CV_64F).var()), 1),
        "brightness": round(float(centre.mean()) / 255.0, 3),
    }
