"""Encoding (lookalike.video): MP4 that browsers stream, animated WebP, posters, one-pass clips."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from lookalike import morph as M
from lookalike import video as V

FPS = 25


def moving_frames(n: int, size: int = 128, holds: int = 0) -> list[np.ndarray]:
    """``holds`` copies (same object) of the first frame, ``n`` frames of a square sliding over
    a gradient (every frame different), then ``holds`` copies of the last."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 255 // size, yy * 255 // size, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    out = []
    for i in range(n):
        f = base.copy()
        x = 4 + i * (size - 40) // max(n - 1, 1)
        cv2.rectangle(f, (x, size // 3), (x + 30, size // 3 + 30), (250, 250, 250), -1)
        cv2.circle(f, (size // 2, size - 20), 6 + i % 7, (10, 10, 200), -1)
        out.append(f)
    return [out[0]] * holds + out + [out[-1]] * holds


def top_level_boxes(path: Path) -> list[str]:
    """Names of the top-level ISO-BMFF boxes, in file order."""
    data = path.read_bytes()
    names, pos = [], 0
    while pos + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        names.append(name.decode("latin-1"))
        pos += size
    return names


def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# --- MP4 ----------------------------------------------------------------------------------------

def test_mp4_has_promised_frames_size_codec_and_pixel_format(tmp_path):
    frames = moving_frames(40, 128, holds=5)
    info = V.write_mp4(iter(frames), tmp_path / "clip.mp4", FPS)
    assert (info.frames, info.width, info.height) == (50, 128, 128)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.duration == pytest.approx(2.0)

    probed = V.probe_video(tmp_path / "clip.mp4")
    assert probed.codec == "h264"
    assert probed.pix_fmt == "yuv420p"
    assert (probed.width, probed.height) == (128, 128)
    assert probed.frames == 50  # counted by decoding
    assert probed.fps == pytest.approx(FPS)
    assert probed.duration == pytest.approx(2.0, abs=0.05)
    with av.open(str(tmp_path / "clip.mp4")) as c:
        cc = c.streams.video[0].codec_context
        assert cc.colorspace == 6 and cc.color_range == 1  # BT.601 matrix, TV range: tagged


def test_mp4_is_faststart_moov_before_mdat(tmp_path):
    V.write_mp4(moving_frames(10), tmp_path / "fs.mp4", FPS)
    boxes = top_level_boxes(tmp_path / "fs.mp4")
    assert boxes[0] == "ftyp"
    assert "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat")


def test_mp4_pixels_survive_encoding(tmp_path):
    frames = moving_frames(12, 128)
    V.write_mp4(frames, tmp_path / "q.mp4", FPS)
    decoded = decode_rgb(tmp_path / "q.mp4")
    assert len(decoded) == 12
    for src, dec in zip(frames, decoded):
        assert np.abs(src.astype(int) - dec).mean() < 3.0


def test_mp4_colours_are_not_shifted(tmp_path):
    """The matrix used to convert and the one tagged agree (a BT.601/709 mix-up shifts these
    saturated colours by 5-20 levels)."""
    colours = [(200, 120, 40), (40, 200, 120), (30, 60, 220), (128, 128, 128), (235, 200, 180)]
    frames = [np.full((64, 64, 3), c, np.uint8) for c in colours]
    V.write_mp4(frames, tmp_path / "flat.mp4", FPS)
    for colour, dec in zip(colours, decode_rgb(tmp_path / "flat.mp4")):
        assert np.abs(dec[32, 32].astype(int) - colour).max() <= 2, (colour, dec[32, 32])


def test_mp4_same_frames_same_bytes(tmp_path):
    frames = moving_frames(30, 128, holds=3)
    V.write_mp4(frames, tmp_path / "a.mp4", FPS)
    V.write_mp4(iter(frames), tmp_path / "b.mp4", FPS)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_mp4_pads_odd_sizes_to_even(tmp_path):
    frames = [f[:77, :101] for f in moving_frames(5, 128)]
    info = V.write_mp4(frames, tmp_path / "odd.mp4", FPS)
    probed = V.probe_video(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (probed.width, probed.height) == (102, 78)
    assert probed.frames == 5


def test_mp4_streams_frames_without_listing_them(tmp_path):
    seen = []

    def gen():
        for i, f in enumerate(moving_frames(8)):
            seen.append(i)
            yield f

    g = gen()
    V.write_mp4(g, tmp_path / "s.mp4", FPS)
    assert seen == list(range(8))
    with pytest.raises(StopIteration):
        next(g)


def test_mp4_refuses_bad_input_and_leaves_no_partial_file(tmp_path):
    with pytest.raises(ValueError):
        V.write_mp4([], tmp_path / "none.mp4", FPS)
    frames = moving_frames(4, 128) + moving_frames(2, 96)
    with pytest.raises(ValueError):
        V.write_mp4(frames, tmp_path / "mixed.mp4", FPS)
    with pytest.raises(ValueError):
        V.write_mp4([np.zeros((64, 64, 3), np.float32)], tmp_path / "float.mp4", FPS)
    assert list(tmp_path.iterdir()) == []


# --- WebP ---------------------------------------------------------------------------------------

def test_webp_is_an_endless_animation_of_the_given_frames(tmp_path):
    frames = moving_frames(24, 256)
    info = V.write_webp(frames, tmp_path / "p.webp", 12, 128)
    assert (info.frames, info.width, info.height) == (24, 128, 128)
    with Image.open(tmp_path / "p.webp") as im:
        assert im.format == "WEBP" and im.is_animated
        assert im.n_frames == 24
        assert im.size == (128, 128)
        assert im.info["loop"] == 0  # forever
    probed = V.probe_video(tmp_path / "p.webp")
    assert probed.codec == "webp" and probed.frames == 24
    assert probed.duration == pytest.approx(2.0, abs=0.002)
    assert probed.fps == pytest.approx(12, rel=0.02)


def test_webp_holds_merge_but_keep_their_time(tmp_path):
    frames = moving_frames(10, 128, holds=4)  # 18 frames, 10 distinct
    info = V.write_webp(frames, tmp_path / "h.webp", 12, 64)
    assert info.frames == 18 and info.duration == pytest.approx(1.5, abs=0.002)
    probed = V.probe_webp(tmp_path / "h.webp")
    assert probed.frames == 10
    assert probed.duration == pytest.approx(18 / 12, abs=0.002)


def test_webp_frames_look_like_the_input(tmp_path):
    frames = moving_frames(6, 256)
    V.write_webp(frames, tmp_path / "l.webp", 12, 128)
    with Image.open(tmp_path / "l.webp") as im:
        for i, src in enumerate(frames):
            im.seek(i)
            got = np.asarray(im.convert("RGB")).astype(int)
            want = cv2.resize(src, (128, 128), interpolation=cv2.INTER_AREA)
            assert np.abs(got - want).mean() < 6


# --- posters and one-pass clips ------------------------------------------------------------------

def face_pair(size: int = 128):
    pts_a = M.reference_shape(size)
    pts_b = pts_a * 1.04 - size * 0.02
    rng = np.random.default_rng(3)
    tex = [cv2.resize(rng.random((16, 16, 3)).astype(np.float32), (size, size)) for _ in range(2)]
    img_a, img_b = [np.clip(t * 255, 0, 255).astype(np.uint8) for t in tex]
    return img_a, pts_a, img_b, pts_b


def test_poster_jpeg_is_the_halfway_frame(tmp_path):
    img_a, pts_a, img_b, pts_b = face_pair()
    half = M.halfway_frame(img_a, pts_a, img_b, pts_b)
    out = V.write_poster(half, tmp_path / "poster.jpg", webp=True)
    assert set(out) == {"jpg", "webp"}
    with Image.open(out["jpg"]) as im:
        assert im.format == "JPEG" and im.size == (128, 128)
        got = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(got - half).mean() < 3
    # and it is not either end: the blend is visibly between A and B
    assert np.abs(got - img_a).mean() > 10 and np.abs(got - img_b).mean() > 10
    with Image.open(out["webp"]) as im:
        assert im.format == "WEBP"


def test_webp_keep_subsamples_evenly():
    kept = [i for i in range(50) if V.webp_keep(i, 25, 12)]
    assert len(kept) == 24 and kept[0] == 0
    assert max(np.diff(kept)) <= 3 and min(np.diff(kept)) >= 2
    assert all(V.webp_keep(i, 12, 25) for i in range(10))  # never more than every frame


def test_render_clip_writes_both_files_from_one_pass(tmp_path):
    img_a, pts_a, img_b, pts_b = face_pair()
    ts = M.timeline(FPS, 2.0, 0.3)
    pulled = []

    def frames():
        for f in M.morph_frames(img_a, pts_a, img_b, pts_b, ts):
            pulled.append(f)
            yield f

    out = V.render_clip(frames(), tmp_path / "job", "good", FPS, 64, 12)
    assert set(out) == {"mp4", "webp"}
    assert out["mp4"] == tmp_path / "job" / "good.mp4" and out["webp"].name == "good.webp"
    assert len(pulled) == 50  # each frame generated exactly once
    mp4 = V.probe_video(out["mp4"])
    webp = V.probe_webp(out["webp"])
    assert mp4.frames == 50 and (mp4.width, mp4.height) == (128, 128)
    assert (webp.width, webp.height) == (64, 64)
    assert webp.duration == pytest.approx(mp4.duration, abs=0.01)  # same clip length
    # the ramp (~34 frames at 25 fps) leaves 16-17 distinct preview frames at 12 fps; holds merge
    assert 10 <= webp.frames <= 24
    # first and last preview frames are the two faces
    with Image.open(out["webp"]) as im:
        im.seek(0)
        first = np.asarray(im.convert("RGB")).astype(int)
        im.seek(im.n_frames - 1)
        last = np.asarray(im.convert("RGB")).astype(int)
    small = lambda x: cv2.resize(x, (64, 64), interpolation=cv2.INTER_AREA)  # noqa: E731
    assert np.abs(first - small(img_a)).mean() < np.abs(first - small(img_b)).mean()
    assert np.abs(last - small(img_b)).mean() < np.abs(last - small(img_a)).mean()
