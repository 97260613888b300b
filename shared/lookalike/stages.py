"""The job's stages as plain functions: the same calls run in-process (embedded default) and
inside the Celery workers (distributed). Inputs and outputs are plain data; no I/O to queues.

    encode_image(bytes)            -> FaceAnalysis        decode → detect → landmarks → align → embed
    match_face(analysis, index)    -> SearchResult        top-k people, best good, best bad
    invert_face(aligned)           -> bytes               StyleGAN W+ of the crop (renderer=stylegan)
    render_morphs(visitor, targets, out_dir) -> artifacts  morph and smile clips, poster
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lookalike.config import Settings, get_settings
from lookalike.faces import FaceAnalysis, analyze_face, get_backend
from lookalike.faces.backend import FaceBackend
from lookalike.gallery.index import GalleryIndex, SearchResult
from lookalike.imaging import decode_image


def encode_image(data: bytes, *, settings: Settings | None = None,
                 backend: FaceBackend | None = None) -> FaceAnalysis:
    """Photo bytes → the chosen face. Raises the typed input errors of ``lookalike.errors``."""
    settings = settings or get_settings()
    t = time.perf_counter()
    image = decode_image(data, max_pixels=settings.max_image_pixels,
                         max_bytes=settings.max_upload_bytes, background=settings.background_rgb)
    decode_s = time.perf_counter() - t
    analysis = analyze_face(image.rgb, backend=backend or get_backend(settings.face_backend),
                            max_side=settings.detect_max_side, min_face_px=settings.min_face_px,
                            align_size=settings.align_size)
    analysis.timings = {"decode": decode_s, **analysis.timings}
    return analysis


def match_face(analysis: FaceAnalysis, index: GalleryIndex, *, top_k: int = 5) -> SearchResult:
    return index.search(analysis.embedding, top_k, model=analysis.model)


def invert_face(aligned: np.ndarray, *, settings: Settings | None = None) -> bytes | None:
    """The encoder stage's StyleGAN step: the aligned crop's W+ latent as ``.npz`` bytes, or
    None with the classical renderer (which needs no latent)."""
    settings = settings or get_settings()
    if settings.renderer != "stylegan":
        return None
    from lookalike.stylegan.stage import invert_aligned

    return invert_aligned(aligned, settings)


def render_morphs(visitor_face: np.ndarray, visitor_points: np.ndarray,
                  targets: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path,
                  *, settings: Settings | None = None, smile: bool = True,
                  visitor_latent: bytes | None = None) -> tuple[dict[str, Path], dict[str, float]]:
    """Morph clips visitor → each target (name → (crop, points)), plus the smile clip.

    ``LOOKALIKE_RENDERER`` picks the renderer; both write the same file names.  The StyleGAN
    one uses ``visitor_latent`` (from ``invert_face``; inverted here when None) and ignores the
    landmarks. Returns the artifact paths by name and the seconds spent per clip.
    """
    settings = settings or get_settings()
    if settings.renderer == "stylegan":
        from lookalike.stylegan.stage import render_clips

        return render_clips(visitor_face, visitor_latent, {n: crop for n, (crop, _) in targets.items()},
                            Path(out_dir), settings=settings, smile=smile)
    from lookalike.render import render_job_clips

    return render_job_clips(visitor_face, visitor_points, targets, Path(out_dir),
                            settings=settings, smile=smile)
