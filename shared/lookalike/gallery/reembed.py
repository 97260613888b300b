"""``lookalike gallery reembed``: move a gallery into another face model's embedding space.

Embeddings of different models cannot be compared, so a gallery records the model that made
its embeddings and search refuses queries from another model. After switching backend (or
pack), this recomputes every embedding from what the gallery already keeps — each photo's
aligned FFHQ crop and its 68 landmarks in crop pixels — without the original photos.

For each crop the new backend's detector runs on the crop, and the detection that overlaps
the landmarks' box best is used (so an ONNX pack aligns on its own 5 key points, exactly as
it does for visitors' photos); when none overlaps well enough, the landmarks' bounding box is
the detection and the backend derives what it needs from the 68 points. New embeddings and
the new model tag are written in one save: readers see the old gallery or the new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError
from lookalike.faces.backend import FaceBackend
from lookalike.faces.types import Box, Detection
from lookalike.gallery.store import Gallery

#: a detection in the crop is the gallery's face when it overlaps the landmarks' box this much
MIN_IOU = 0.3


@dataclass
class ReembedReport:
    old_model: str
    new_model: str
    photos: int = 0
    #: aligned on the new detector's own detection in the crop
    detected: int = 0
    #: aligned from the stored 68 landmarks (the detector found nothing overlapping)
    from_landmarks: int = 0
    #: photos whose crop could not be read or embedded: dropped (a re-import restores them)
    failed: list[dict] = field(default_factory=list)
    skipped: bool = False  # the gallery was already in the backend's space
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"old_model": self.old_model, "new_model": self.new_model, "photos": self.photos,
                "detected": self.detected, "from_landmarks": self.from_landmarks,
                "failed": self.failed, "skipped": self.skipped, "seconds": round(self.seconds, 2)}


def landmark_box(landmarks: np.ndarray) -> Box:
    lm = np.asarray(landmarks, dtype=np.float64)
    (x1, y1), (x2, y2) = lm.min(axis=0), lm.max(axis=0)
    return Box(float(x1), float(y1), float(x2), float(y2), 1.0)


def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a.right, b.right) - max(a.left, b.left))
    h = max(0.0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = w * h
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def crop_detection(backend: FaceBackend, crop: np.ndarray, landmarks: np.ndarray,
                   *, detect: bool = True) -> tuple[Detection, bool]:
    """The detection to embed a gallery crop with, and whether the detector supplied it."""
    lm_box = landmark_box(landmarks)
    if detect:
        best = max(backend.detect(crop), key=lambda d: iou(d.box, lm_box), default=None)
        if best is not None and iou(best.box, lm_box) >= MIN_IOU:
            return best, True
    return Detection(lm_box, None), False


def reembed_gallery(gallery_dir: Path | str, backend: FaceBackend, *,
                    progress: Callable[[Iterable, int], Iterable] | None = None,
                    force: bool = False, detect: bool = True) -> ReembedReport:
    """Recompute every embedding of the gallery at ``gallery_dir`` with ``backend``.

    ``progress(items, total)`` wraps the per-photo loop (a tqdm bar in the CLI). A gallery
    already tagged with ``backend.model_id`` is left alone unless ``force``.
    """
    started = time.perf_counter()
    gallery = Gallery.load(gallery_dir)
    report = ReembedReport(old_model=gallery.model, new_model=backend.model_id)
    if gallery.model == backend.model_id and not force:
        report.skipped = True
        report.seconds = time.perf_counter() - started
        return report

    rows: Iterable[int] = range(len(gallery))
    if progress is not None:
        rows = progress(rows, len(gallery))
    vectors: list[np.ndarray | None] = []
    lost: set[int] = set()
    for i in rows:
        photo = gallery.photos[i]
        try:
            with Image.open(gallery.crop_path(i)) as im:
                crop = np.asarray(im.convert("RGB"))
            detection, detected = crop_detection(backend, crop, gallery.landmarks[i], detect=detect)
            vectors.append(np.asarray(backend.embed(crop, detection, gallery.landmarks[i]), np.float32))
        except (OSError, LookalikeError) as exc:
            code = exc.code if isinstance(exc, LookalikeError) else "crop_unreadable"
            lost.add(i)
            vectors.append(None)
            report.failed.append({"person": photo.person_id, "source": photo.source, "code": code,
                                  "message": f"the gallery crop {photo.crop} could not be embedded "
                                             f"({exc}); import the photo again"})
            continue
        report.detected += detected
        report.from_landmarks += not detected

    blank = np.zeros(backend.embedding_dim, np.float32)
    gallery.embeddings = np.stack([blank if v is None else v for v in vectors]).astype(np.float32) \
        if vectors else np.zeros((0, backend.embedding_dim), np.float32)
    gallery.remove_photos(lost)  # rows (and broken crop files) of photos that failed
    # people stay even if all their crops failed: a re-import brings their photos back
    gallery.failed = gallery.failed + report.failed
    gallery.model = backend.model_id
    gallery.save()
    report.photos = len(gallery)
    report.seconds = time.perf_counter() - started
    return report
