"""`lookalike run` with LOOKALIKE_RENDERER=stylegan, as an operator runs it: the tiny fixture
generator, a VGG16 weights file and a smile direction, real photos in, playable videos out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.video import probe_video, probe_webp

torch = pytest.importorskip("torch")

PEOPLE = ["Tony_Blair", "Serena_Williams", "Halle_Berry"]
LOOKALIKE = [sys.executable, "-m", "lookalike.cli"]
FPS, SECONDS, HOLD, SIZE = 10, 1.0, 0.2, 64


def lookalike(*args, env=None, check=False):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*LOOKALIKE, *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def smile_file(tmp_path_factory, tiny) -> Path:
    g, _ = tiny
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("smile") / "smile.npy"
    np.save(path, rng.standard_normal((g.n_latent, g.style_dim)).astype(np.float32) * 0.2)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_checkpoint, vgg_file, smile_file) -> dict[str, str]:
    root = tmp_path_factory.mktemp("data")
    return {"LOOKALIKE_DATA_DIR": str(root), "LOOKALIKE_RENDERER": "stylegan",
            "LOOKALIKE_STYLEGAN_CHECKPOINT": str(tiny_checkpoint),
            "LOOKALIKE_STYLEGAN_VGG16": str(vgg_file),
            "LOOKALIKE_STYLEGAN_SMILE_DIRECTION": str(smile_file),
            "LOOKALIKE_STYLEGAN_DEVICE": "cpu", "LOOKALIKE_STYLEGAN_STEPS": "4",
            "LOOKALIKE_VIDEO_FPS": str(FPS), "LOOKALIKE_MORPH_SECONDS": str(SECONDS),
            "LOOKALIKE_HOLD_SECONDS": str(HOLD), "LOOKALIKE_VIDEO_SIZE": str(SIZE),
            "LOOKALIKE_WEBP_SIZE": str(SIZE), "LOOKALIKE_WEBP_FPS": "5",
            "OMP_NUM_THREADS": "2"}


@pytest.fixture(scope="module")
def gallery(env, fixtures_dir) -> Path:
    """One photo per person (so a match names its photo), Halle Berry tagged bad news."""
    root = Path(env["LOOKALIKE_DATA_DIR"])
    src = root / "photos"
    for person in PEOPLE:
        (src / person).mkdir(parents=True)
        first = sorted((fixtures_dir / "faces" / person).iterdir())[0]
        (src / person / first.name).symlink_to(first)
    meta = root / "meta.csv"
    meta.write_text("id,name,category\nHalle_Berry,Halle B.,bad\n")
    proc = lookalike("gallery", "import", src, "--metadata", meta, "--json", env=env, check=True)
    report = json.loads(proc.stdout)
    assert report["added"] == 3
    # celebrity latents are computed at import, one per photo, and cached
    assert report["stylegan_latents"] == {"inverted": 3, "cached": 0}
    assert len(list((root / "cache" / "stylegan-latents").glob("*.npz"))) == 3
    again = json.loads(lookalike("gallery", "import", src, "--metadata", meta, "--json",
                                 env=env, check=True).stdout)
    assert again["stylegan_latents"] == {"inverted": 0, "cached": 3}
    return root / "gallery"


def _settings(env: dict[str, str], monkeypatch):
    from lookalike.config import Settings

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings()


def test_run_renders_stylegan_morphs_and_smile(env, gallery, fixtures_dir, tmp_path, tiny, monkeypatch):
    from lookalike.gallery.store import Gallery
    from lookalike.morph import timeline
    from lookalike.render import smile_timeline
    from lookalike.stylegan.latents import LatentCache, latent_cache_key, latent_from_bytes
    from lookalike.stylegan.latents import file_fingerprint
    from lookalike.stylegan.render import to_uint8
    from lookalike.stylegan.stage import inversion_params

    out = tmp_path / "out"
    photo = fixtures_dir / "faces" / "Tony_Blair" / "4.jpg"
    lookalike("run", photo, "--out", out, env=env, check=True)
    result = json.loads((out / "result.json").read_text())
    assert result["state"] == "succeeded"
    assert result["good_news"]["id"] == "Tony_Blair" and result["bad_news"]["id"] == "Halle_Berry"
    assert result["timings_ms"]["invert"] > 0

    # the same files as the classical renderer, with the promised frames, size and codec
    morph_frames_n = len(timeline(FPS, SECONDS, HOLD))
    smile_frames_n = len(smile_timeline(FPS, SECONDS, HOLD))
    assert (morph_frames_n, smile_frames_n) == (10, 10)
    for name, frames in (("morph-good", morph_frames_n), ("morph-bad", morph_frames_n),
                         ("smile", smile_frames_n)):
        info = probe_video(out / f"{name}.mp4")
        assert (info.codec, info.width, info.height, info.frames, info.pix_fmt) == \
            ("h264", SIZE, SIZE, frames, "yuv420p")
        webp = probe_webp(out / f"{name}.webp")
        assert webp.width == SIZE and webp.frames >= 2
    for name in ("poster.jpg", "poster-good.jpg", "poster-bad.jpg", "aligned.jpg"):
        assert (out / name).stat().st_size > 300
    assert set(result["artifacts"]) >= {"morph_good_mp4", "morph_bad_webp", "smile_mp4", "poster",
                                        "latent"}

    # the visitor's latent is kept with the job: W+ of the tiny generator, from its checkpoint
    g, _ = tiny
    visitor = latent_from_bytes((out / "latent.npz").read_bytes())
    assert visitor.w_plus.shape == (g.n_latent, g.style_dim)
    assert visitor.meta["checkpoint"] == file_fingerprint(env["LOOKALIKE_STYLEGAN_CHECKPOINT"])
    assert visitor.meta["vgg16"] == file_fingerprint(env["LOOKALIKE_STYLEGAN_VGG16"])  # part of the cache key
    assert visitor.meta["steps"] == 4

    # the poster is the generator's image halfway between the visitor's and the match's W+
    settings = _settings(env, monkeypatch)
    g_photo = Gallery.load(gallery)
    (i,) = g_photo.photos_of("Tony_Blair")
    crop = np.asarray(Image.open(g_photo.crop_path(i)).convert("RGB"))
    celeb = LatentCache(Path(env["LOOKALIKE_DATA_DIR"]) / "cache" / "stylegan-latents").get(
        latent_cache_key(visitor.meta["checkpoint"], crop,
                         {**inversion_params(settings), "vgg16": visitor.meta["vgg16"]}))
    assert celeb is not None
    with torch.no_grad():
        mid = torch.from_numpy((visitor.w_plus + celeb.w_plus) / 2)[None]
        img = torch.nn.functional.interpolate(g.synthesis(mid), size=(SIZE, SIZE), mode="bicubic")
    expected = to_uint8(img)[0].astype(np.float32)
    poster = np.asarray(Image.open(out / "poster-good.jpg").convert("RGB"), np.float32)
    assert np.abs(poster - expected).mean() < 12
    # ... and not the classical halfway blend of the two photos
    aligned = np.asarray(Image.open(out / "aligned.jpg").convert("RGB").resize((SIZE, SIZE)), np.float32)
    classical = (aligned + np.asarray(Image.fromarray(crop).resize((SIZE, SIZE)), np.float32)) / 2
    assert np.abs(classical - expected).mean() > 3 * np.abs(poster - expected).mean()


def test_missing_stylegan_files_are_named_at_start(env, fixtures_dir, tmp_path):
    photo = fixtures_dir / "faces" / "Tony_Blair" / "4.jpg"
    bad = {**env, "LOOKALIKE_DATA_DIR": str(tmp_path / "empty"),
           "LOOKALIKE_STYLEGAN_VGG16": str(tmp_path / "nowhere" / "vgg16.pth"),
           "LOOKALIKE_STYLEGAN_SMILE_DIRECTION": ""}
    out = tmp_path / "out"
    proc = lookalike("run", photo, "--out", out, env=bad)
    assert proc.returncode == 4, proc.stderr
    assert "LOOKALIKE_STYLEGAN_VGG16" in proc.stderr and "nowhere/vgg16.pth" in proc.stderr
    assert "LOOKALIKE_STYLEGAN_SMILE_DIRECTION is not set" in proc.stderr
    assert "LOOKALIKE_STYLEGAN_CHECKPOINT" not in proc.stderr       # that one is there
    assert not out.exists()                                          # stopped before any work

    # a worker for the encoder or renderer queue refuses to start the same way
    worker = lookalike("worker", "-Q", "renderer",
                       env={**bad, "LOOKALIKE_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert worker.returncode == 4 and "LOOKALIKE_STYLEGAN_VGG16" in worker.stderr
    # ... and with the classical renderer the same files are not needed
    ok = lookalike("run", photo, "--out", out, "--no-video", env={**bad, "LOOKALIKE_RENDERER": "classical"})
    assert ok.returncode == 3 and "gallery" in ok.stderr                # the next problem: no gallery


def test_files_that_do_not_load_stop_serve_and_workers_at_start(env, tmp_path, tiny):
    """Present but unusable files (corrupt, a .npz where a .npy belongs) stop the server and
    the workers with the setting named -- not a healthy-looking server that fails every job."""
    g, _ = tiny
    corrupt = tmp_path / "random.pt"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    archive = tmp_path / "latent.npz"
    np.savez(archive, w_plus=np.ones((g.n_latent, g.style_dim), np.float32))
    distributed = {"LOOKALIKE_REDIS_URL": "redis://127.0.0.1:1/0", "LOOKALIKE_STORAGE": "s3",
                   "LOOKALIKE_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none",
                   "LOOKALIKE_S3_ENDPOINT_URL": "http://127.0.0.1:1",
                   "LOOKALIKE_SECRET_KEY": "0123456789abcdef0123456789abcdef"}
    for setting, path, words in (("LOOKALIKE_STYLEGAN_CHECKPOINT", corrupt, "not a readable PyTorch checkpoint"),
                                 ("LOOKALIKE_STYLEGAN_SMILE_DIRECTION", archive, "is a .npz archive")):
        bad = {**env, "LOOKALIKE_DATA_DIR": str(tmp_path / "data"), setting: str(path)}
        serve = lookalike("serve", "--port", "1", env=bad)
        worker = lookalike("worker", "-Q", "encoder", env={**bad, **distributed})
        for proc in (serve, worker):
            assert proc.returncode == 4, proc.stderr
            assert setting in proc.stderr and words in proc.stderr and "Traceback" not in proc.stderr
            assert "weights_only" not in proc.stderr  # not torch's advice to unpickle anything
