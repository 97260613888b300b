"""The StyleGAN renderer as the product runs it (``LOOKALIKE_RENDERER=stylegan``).

    check_renderer(settings)                      start-up: names every missing file, exits 4
    get_models(settings)                          generator, VGG16, smile direction: once per process
    invert_aligned(aligned, settings) -> bytes    encoder stage: the visitor's W+ (per job, .npz bytes)
    celebrity_latent(crop, settings)              W+ of a gallery crop, cached by content (LatentCache)
    precompute_gallery_latents(gallery, settings) gallery import: fill that cache for every photo
    render_clips(...)                             renderer stage: the classical renderer's files

The torch-based submodules are imported inside the functions, so a classical-only process
never imports torch through this module.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from lookalike.config import Settings
from lookalike.errors import ConfigError

log = logging.getLogger(__name__)

#: setting name -> Settings attribute of the files the StyleGAN renderer cannot run without
REQUIRED_FILES = {
    "LOOKALIKE_STYLEGAN_CHECKPOINT": "stylegan_checkpoint",
    "LOOKALIKE_STYLEGAN_VGG16": "stylegan_vgg16",
    "LOOKALIKE_STYLEGAN_SMILE_DIRECTION": "stylegan_smile_direction",
}
ENCODER_FILE = ("LOOKALIKE_STYLEGAN_ENCODER", "stylegan_encoder")

LATENT_NAME = "latent.npz"        # per job: output folder (run) / jobs/<id>/latent.npz (service)


# --- start-up check --------------------------------------------------------------------------

def uses_stylegan(settings: Settings) -> bool:
    return settings.renderer == "stylegan"


def stylegan_files(settings: Settings) -> dict[str, Path | None]:
    """{setting name: path} of the required files, plus the encoder when one is set."""
    files = {name: getattr(settings, attr) for name, attr in REQUIRED_FILES.items()}
    if settings.stylegan_encoder is not None:
        files[ENCODER_FILE[0]] = settings.stylegan_encoder
    return files


def check_renderer(settings: Settings) -> None:
    """Start-up check: with the StyleGAN renderer chosen, every file must exist (and torch).

    Raises one ConfigError naming each unset or missing file; does nothing for ``classical``.
    Cheap (no model is loaded), so commands and workers call it before doing any work.
    """
    if not uses_stylegan(settings):
        return
    if importlib.util.find_spec("torch") is None:
        raise ConfigError("LOOKALIKE_RENDERER=stylegan needs torch (the 'stylegan' extra), "
                          "which is not installed",
                          advice="Install the stylegan extra, or set LOOKALIKE_RENDERER=classical.")
    from lookalike.stylegan.models import require_files

    require_files(stylegan_files(settings))


# --- models, once per process ----------------------------------------------------------------

_lock = threading.Lock()
_models: dict[tuple, object] = {}


def _models_key(settings: Settings) -> tuple:
    return (str(settings.stylegan_checkpoint), str(settings.stylegan_vgg16),
            str(settings.stylegan_smile_direction), str(settings.stylegan_encoder),
            settings.stylegan_device)


def get_models(settings: Settings):
    """The process's ``StyleGANModels`` for these settings (loaded on first call, then reused)."""
    key = _models_key(settings)
    with _lock:
        models = _models.get(key)
        if models is None:
            check_renderer(settings.model_copy(update={"renderer": "stylegan"}))
            from lookalike.stylegan.models import load_models

            t = time.perf_counter()
            models = load_models(settings.stylegan_checkpoint, vgg16=settings.stylegan_vgg16,
                                 smile_direction=settings.stylegan_smile_direction,
                                 encoder=settings.stylegan_encoder, device=settings.stylegan_device)
            log.info("StyleGAN models loaded in %.1f s on %s (%d px, %d latents)",
                     time.perf_counter() - t, models.device, models.generator.size,
                     models.generator.n_latent)
            _models[key] = models
        return models


def check_models_load(settings: Settings) -> None:
    """Start-up check of a worker that forks its pool: load the models once in a separate
    Python process (so this one starts no torch threads or CUDA context to hand to its children)
    and raise the ConfigError it met -- a corrupt file, a wrong layout, no CUDA -- here."""
    import json
    import subprocess
    import sys

    if not uses_stylegan(settings):
        return
    code = ("import json, sys\n"
            "from lookalike.config import get_settings\n"
            "from lookalike.errors import LookalikeError\n"
            "from lookalike.stylegan.stage import get_models\n"
            "try:\n    get_models(get_settings())\n"
            "except LookalikeError as exc:\n"
            "    print(json.dumps({'message': exc.message, 'advice': exc.advice}))\n    sys.exit(4)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if done.returncode == 0:
        return
    try:
        problem = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(f"the StyleGAN models could not be loaded: {tail}") from None
    raise ConfigError(problem["message"], advice=problem.get("advice"))


# --- inversion (encoder stage; gallery import) -----------------------------------------------

def inversion_params(settings: Settings) -> dict:
    """The settings an inverted latent depends on (part of a celebrity latent's cache key)."""
    return {"steps": settings.stylegan_steps, "lr": settings.stylegan_lr,
            "lr_rampup": settings.stylegan_lr_rampup, "lr_rampdown": settings.stylegan_lr_rampdown,
            "perceptual_weight": settings.stylegan_perceptual_weight,
            "pixel_weight": settings.stylegan_pixel_weight, "face_mask": settings.stylegan_face_mask,
            "optimize_noise": settings.stylegan_optimize_noise,
            "noise_reg_weight": settings.stylegan_noise_reg_weight,
            "encoder": str(settings.stylegan_encoder or "")}


def _invert(models, images: list[np.ndarray], settings: Settings) -> list:
    """Invert aligned uint8 crops in batches of ``stylegan_batch_size``.  -> InversionResult each"""
    import torch

    from lookalike.stylegan.inversion import encode, invert_many, to_image_tensor
    from lookalike.stylegan.render import soft_mask

    g = models.generator
    init = None
    if models.encoder is not None:
        batch = torch.stack([to_image_tensor(im, g.size, models.device) for im in images])
        init = list(encode(models.encoder, batch, g.n_latent, g.style_dim))
    mask = soft_mask(g.size, "ellipse") if settings.stylegan_face_mask else None
    return invert_many(
        g, images, steps=settings.stylegan_steps, lr=settings.stylegan_lr,
        lr_rampup=settings.stylegan_lr_rampup, lr_rampdown=settings.stylegan_lr_rampdown,
        batch_size=settings.stylegan_batch_size, perceptual=models.perceptual,
        perceptual_weight=settings.stylegan_perceptual_weight,
        pixel_weight=settings.stylegan_pixel_weight,
        masks=None if mask is None else [mask] * len(images), init_latents=init,
        latent_avg=models.latent_avg, optimize_noise=settings.stylegan_optimize_noise,
        noise_reg_weight=settings.stylegan_noise_reg_weight)


def _meta(models, result, settings: Settings) -> dict:
    return {"checkpoint": models.checkpoint_fingerprint, **inversion_params(settings),
            "vgg16": models.vgg16_fingerprint,
            "initial_loss": round(float(result.initial_loss), 6),
            "final_loss": round(float(result.final_loss), 6)}


def invert_aligned(aligned: np.ndarray, settings: Settings) -> bytes:
    """The encoder stage's StyleGAN step: the visitor's aligned crop -> W+ as ``.npz`` bytes."""
    from lookalike.stylegan.latents import latent_to_bytes

    models = get_models(settings)
    result = _invert(models, [aligned], settings)[0]
    return latent_to_bytes(result.w_plus, result.noises, _meta(models, result, settings))


def latent_cache(settings: Settings):
    from lookalike.stylegan.latents import LatentCache

    root = settings.stylegan_latent_cache_dir or Path(settings.data_dir) / "cache" / "stylegan-latents"
    return LatentCache(root)


def _cache_key(models, crop: np.ndarray, settings: Settings) -> str:
    from lookalike.stylegan.latents import latent_cache_key

    return latent_cache_key(models.checkpoint_fingerprint, crop,
                            {**inversion_params(settings), "vgg16": models.vgg16_fingerprint})


def celebrity_latents(crops: list[np.ndarray], settings: Settings) -> list:
    """``StoredLatent`` of each gallery crop: from the cache, else inverted (together) and cached."""
    models = get_models(settings)
    cache = latent_cache(settings)
    keys = [_cache_key(models, c, settings) for c in crops]
    found = [cache.get(k) for k in keys]
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        results = _invert(models, [crops[i] for i in missing], settings)
        for i, result in zip(missing, results):
            cache.put(keys[i], result.w_plus, result.noises, _meta(models, result, settings))
            found[i] = cache.get(keys[i])
    return found


def precompute_gallery_latents(crops: Iterable[Callable[[], np.ndarray]], settings: Settings,
                               progress: Callable[[Iterable, int], Iterable] | None = None) -> dict:
    """Gallery import: make sure every crop (given as loaders, to keep memory flat) has a
    cached latent.  Returns {"inverted": n, "cached": n}."""
    models = get_models(settings)
    cache = latent_cache(settings)
    loaders = list(crops)
    todo: list[tuple[str, np.ndarray]] = []
    cached = 0
    for load in (progress(loaders, len(loaders)) if progress else loaders):
        crop = load()
        key = _cache_key(models, crop, settings)
        if cache.path(key).is_file():
            cached += 1
        else:
            todo.append((key, crop))
        if len(todo) >= settings.stylegan_batch_size:
            _invert_into(models, cache, todo, settings)
            todo = []
    if todo:
        _invert_into(models, cache, todo, settings)
    return {"inverted": len(loaders) - cached, "cached": cached}


def _invert_into(models, cache, todo: list[tuple[str, np.ndarray]], settings: Settings) -> None:
    results = _invert(models, [crop for _, crop in todo], settings)
    for (key, _), result in zip(todo, results):
        cache.put(key, result.w_plus, result.noises, _meta(models, result, settings))


# --- renderer stage ----------------------------------------------------------------------------

def render_clips(visitor_face: np.ndarray, visitor_latent: bytes | None,
                 targets: dict[str, np.ndarray], out_dir: Path, *, settings: Settings,
                 smile: bool = True) -> tuple[dict[str, Path], dict[str, float]]:
    """Write the classical renderer's files from W+ latents: ``morph-<name>.mp4/.webp`` and
    ``poster-<name>.jpg`` per target, ``poster.jpg`` (the first target's), ``smile.mp4/.webp``.

    ``visitor_latent``: the encoder stage's bytes (inverted here when None); ``targets``: clip
    name -> the celebrity's aligned crop, whose latent comes from the cache.  Frame counts and
    timing follow the same settings as the classical clips.
    """
    import torch

    from lookalike.morph import timeline
    from lookalike.render import smile_timeline, write_morph, write_smile
    from lookalike.stylegan.latents import latent_from_bytes
    from lookalike.stylegan.render import linear, morph_frames, smile_frames

    models = get_models(settings)
    g = models.generator
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size, fps = settings.video_size, settings.video_fps
    common = {"batch_size": settings.stylegan_frame_batch, "out_size": size,
              "photo_fade": settings.stylegan_photo_fade, "ease": linear}  # timelines come eased
    paths: dict[str, Path] = {}
    timings: dict[str, float] = {}

    t = time.perf_counter()
    if visitor_latent is None:
        visitor_latent = invert_aligned(visitor_face, settings)
        timings["invert"] = time.perf_counter() - t
    visitor = latent_from_bytes(visitor_latent)
    names = list(targets)
    t = time.perf_counter()
    celebs = dict(zip(names, celebrity_latents([targets[n] for n in names], settings)))
    if names:
        timings["celebrity_latents"] = time.perf_counter() - t

    with torch.inference_mode():
        ts = timeline(fps, settings.morph_seconds, settings.hold_seconds)
        for name in names:
            t = time.perf_counter()
            celeb = celebs[name]
            kwargs = dict(photo_from=visitor_face, photo_to=targets[name],
                          noise_from=visitor.noise_tensors(), noise_to=celeb.noise_tensors(), **common)
            poster = next(iter(morph_frames(g, visitor.w_plus, celeb.w_plus, [0.5], **kwargs)))
            write_morph(paths, name, morph_frames(g, visitor.w_plus, celeb.w_plus, ts, **kwargs),
                        poster, out_dir, settings)
            timings[f"render_{name}"] = time.perf_counter() - t

        if smile:
            t = time.perf_counter()
            ts_smile = smile_timeline(fps, settings.morph_seconds, settings.hold_seconds)
            frames = smile_frames(g, visitor.w_plus, models.smile_direction, ts_smile,
                                  strength=settings.stylegan_smile_strength, photo=visitor_face,
                                  noise=visitor.noise_tensors(), **common)
            write_smile(paths, frames, out_dir, settings)
            timings["render_smile"] = time.perf_counter() - t
    return paths, timings
