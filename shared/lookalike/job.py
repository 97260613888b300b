"""One whole job on this machine (the embedded default): photo in, result folder out.

The same stage functions run here in sequence that the distributed workers run one per queue.
The output folder holds ``result.json`` plus the media it names, all with fixed names, so a
rerun rewrites the same files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from lookalike import __version__
from lookalike.config import Settings, get_settings
from lookalike.errors import ConfigError, LookalikeError
from lookalike.faces import get_backend
from lookalike.gallery.index import GalleryIndex, Match
from lookalike.gallery.store import Gallery
from lookalike.stages import encode_image, invert_face, match_face, render_morphs

SIMILARITY_NOTE = ("similarity 0..1: 0.5 is the face model's same-person threshold; "
                   "look-alikes usually score 0.3-0.5")


def load_index(gallery_dir: Path, settings: Settings | None = None) -> GalleryIndex:
    """The gallery's search index for the configured face model (load once, reuse)."""
    settings = settings or get_settings()
    backend = get_backend(settings.face_backend)
    gallery = Gallery.load(gallery_dir)
    return GalleryIndex(gallery, backend.same_person_distance)


#: what a run writes into its output folder (fixed names; see render.py)
OUTPUT_FILES = ("result.json", "aligned.jpg", "latent.npz", "morph-*.mp4", "morph-*.webp",
                "smile.mp4", "smile.webp", "poster.jpg", "poster-*.jpg")


def prepare_out_dir(out_dir: Path) -> Path:
    """Create the output folder and remove what an earlier run wrote there, so a result never
    sits beside another photo's media. Only the run's own file names are touched."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for pattern in OUTPUT_FILES:
            for old in out_dir.glob(pattern):
                old.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to the output folder {out_dir}: {exc.strerror}",
                          advice="Choose a folder you can write to with --out.") from None
    return out_dir


def _target(index: GalleryIndex, match: Match) -> tuple[np.ndarray, np.ndarray]:
    crop = np.asarray(Image.open(index.gallery.crop_path(match.photo)).convert("RGB"))
    return crop, index.gallery.landmarks[match.photo]


def run_job(data: bytes, out_dir: Path, index: GalleryIndex, *, settings: Settings | None = None,
            top_k: int | None = None, render: bool = True, photo_name: str = "photo",
            on_stage: Callable[[str], None] | None = None) -> dict:
    """Run every stage and write ``result.json`` and media into ``out_dir``.

    Returns the result dict. Input problems (no face, corrupt photo, …) are raised as the typed
    errors of ``lookalike.errors`` after a ``result.json`` with ``state: failed`` is written.
    """
    settings = settings or get_settings()
    out_dir = prepare_out_dir(Path(out_dir))
    notify = on_stage or (lambda stage: None)
    started = time.perf_counter()
    result: dict = {"version": __version__, "photo": photo_name, "state": "encoding"}
    try:
        notify("encoding")
        face = encode_image(data, settings=settings)
        timings = dict(face.timings)
        result["face"] = face.summary()
        Image.fromarray(face.aligned).save(out_dir / "aligned.jpg", quality=92)
        artifacts = {"aligned": "aligned.jpg"}
        latent = None
        if render and settings.renderer == "stylegan":
            # StyleGAN inversion belongs to the encoder stage; the latent is kept with the job
            t = time.perf_counter()
            latent = invert_face(face.aligned, settings=settings)
            timings["invert"] = time.perf_counter() - t
            (out_dir / "latent.npz").write_bytes(latent)
            artifacts["latent"] = "latent.npz"

        notify("matching")
        t = time.perf_counter()
        found = match_face(face, index, top_k=top_k or settings.top_k)
        timings["search"] = time.perf_counter() - t
        result.update(found.to_dict())
        result["similarity_note"] = SIMILARITY_NOTE
        timings["matches_ready"] = time.perf_counter() - started

        if render:
            notify("rendering")
            targets = {}
            if found.good_news:
                targets["good"] = _target(index, found.good_news)
            if found.bad_news:
                targets["bad"] = _target(index, found.bad_news)
            paths, render_timings = render_morphs(face.aligned, face.aligned_landmarks, targets,
                                                  out_dir, settings=settings, visitor_latent=latent)
            timings.update(render_timings)
            artifacts.update({name: p.name for name, p in paths.items()})
        result["artifacts"] = artifacts
        result["state"] = "succeeded"
    except LookalikeError as exc:
        result["state"] = "failed"
        result["error"] = exc.to_dict()
        timings = locals().get("timings", {})
        _finish(result, timings, started, out_dir)
        raise
    _finish(result, timings, started, out_dir)
    return result


def _finish(result: dict, timings: dict, started: float, out_dir: Path) -> None:
    timings["total"] = time.perf_counter() - started
    result["timings_ms"] = {k: round(v * 1000, 1) for k, v in timings.items()}
    tmp = out_dir / ".result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out_dir / "result.json")
