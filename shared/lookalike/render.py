"""The renderer stage: morph clips visitor → good news and visitor → bad news, and the smile.

Frames come from :mod:`lookalike.morph` (classical landmark morph, the default) and go through
:mod:`lookalike.video` once each: an H.264 MP4 for playback, a small animated WebP preview, and
a poster (the halfway blend). File names are fixed, so a re-run rewrites the same files.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from lookalike.config import Settings, get_settings
from lookalike.morph import halfway_frame, morph_frames, smile_frames, timeline
from lookalike.video import render_clip, write_poster


def _at_size(img: np.ndarray, pts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop and its landmarks at ``size`` px (crops are stored at the alignment size)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img, np.asarray(pts, np.float32)
    sx, sy = size / img.shape[1], size / img.shape[0]
    interp = cv2.INTER_AREA if sx < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(img, (size, size), interpolation=interp)
    # pixel centres at integer coordinates: x' = (x + 0.5) * s - 0.5
    scaled = (np.asarray(pts, np.float64) + 0.5) * [sx, sy] - 0.5
    return resized, scaled.astype(np.float32)


def smile_timeline(fps: int, seconds: float, hold_seconds: float) -> list[float]:
    """Neutral → smiling → neutral, so the looping clip has no jump."""
    up = timeline(fps, seconds / 2, hold_seconds / 2)
    return up + up[::-1]


def write_morph(paths: dict[str, Path], name: str, frames, poster: np.ndarray, out_dir: Path,
                settings: Settings) -> None:
    """One morph's files under the names every renderer shares: ``morph-<name>.mp4/.webp``,
    ``poster-<name>.jpg``, and ``poster.jpg`` for the first target. Adds them to ``paths``."""
    clip = render_clip(frames, out_dir, f"morph-{name}", settings.video_fps, settings.webp_size,
                       settings.webp_fps)
    paths[f"morph_{name}_mp4"] = clip["mp4"]
    paths[f"morph_{name}_webp"] = clip["webp"]
    paths[f"poster_{name}"] = write_poster(poster, out_dir / f"poster-{name}.jpg")["jpg"]
    if "poster" not in paths:
        paths["poster"] = write_poster(poster, out_dir / "poster.jpg")["jpg"]


def write_smile(paths: dict[str, Path], frames, out_dir: Path, settings: Settings) -> None:
    """The smile clip's files, ``smile.mp4/.webp``. Adds them to ``paths``."""
    clip = render_clip(frames, out_dir, "smile", settings.video_fps, settings.webp_size,
                       settings.webp_fps)
    paths["smile_mp4"] = clip["mp4"]
    paths["smile_webp"] = clip["webp"]


def render_job_clips(visitor_face: np.ndarray, visitor_points: np.ndarray,
                     targets: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path, *,
                     settings: Settings | None = None,
                     smile: bool = True) -> tuple[dict[str, Path], dict[str, float]]:
    """Write ``morph-<name>.mp4/.webp`` + ``poster-<name>.jpg`` per target and ``smile.*``.

    ``targets`` maps a clip name (``good``, ``bad``) to a celebrity's aligned crop and its 68
    landmarks. ``poster.jpg`` is the first target's halfway frame (the good news when present).
    Returns the written paths by artifact name and the seconds each clip took.
    """
    settings = settings or get_settings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size, fps = settings.video_size, settings.video_fps
    visitor, vpts = _at_size(visitor_face, visitor_points, size)
    ts = timeline(fps, settings.morph_seconds, settings.hold_seconds)
    paths: dict[str, Path] = {}
    timings: dict[str, float] = {}

    for name, (crop, pts) in targets.items():
        t = time.perf_counter()
        celeb, cpts = _at_size(crop, pts, size)
        write_morph(paths, name, morph_frames(visitor, vpts, celeb, cpts, ts),
                    halfway_frame(visitor, vpts, celeb, cpts), out_dir, settings)
        timings[f"render_{name}"] = time.perf_counter() - t

    if smile:
        t = time.perf_counter()
        ts_smile = smile_timeline(fps, settings.morph_seconds, settings.hold_seconds)
        write_smile(paths, smile_frames(visitor, vpts, ts_smile), out_dir, settings)
        timings["render_smile"] = time.perf_counter() - t
    return paths, timings
