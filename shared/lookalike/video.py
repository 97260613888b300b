"""Encode rendered frames: H.264 MP4 for playback, animated WebP for previews, JPEG posters.

Frames are ``(H, W, 3)`` uint8 RGB arrays (what :mod:`lookalike.morph` yields), consumed as a
stream: nothing here holds a whole clip of full-size frames.

MP4 choices, all for "plays at once in every browser and is the same bytes every time":

* H.264 through libx264, ``yuv420p`` (the only chroma layout every browser decodes),
  ``preset veryfast``, ``crf 20`` (visually clean faces at ~50-100 kB per 2 s at 512 px).
* ``movflags +faststart``: the ``moov`` index is written before the media data, so a browser can
  start playing while the file downloads.
* A fixed x264 thread count (2): x264 output depends on its thread count, and its default
  (1.5 x cores) would make a job's video differ from machine to machine.  With a fixed count the
  same frames give byte-identical files, which keeps re-run stages idempotent.
* Odd frame sizes are padded by one replicated row/column (4:2:0 needs even sides).
* RGB -> YUV is BT.601 limited range (OpenCV's I420 conversion, ~4x faster than swscale here),
  and the stream says so (matrix SMPTE 170M, TV range; sRGB material has BT.709 primaries and
  transfer), so players do not guess.
* Written to a temporary name and renamed, so a crash never leaves a half file under the
  final name.

WebP previews are lossy (quality 70) at a lower frame rate and size; libwebp's animation
encoder merges consecutive identical frames (the holds) into one longer frame, so a WebP can
hold fewer frames than it was given while lasting exactly as long.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

#: libx264 settings (see the module docstring for why).
MP4_CRF = 20
MP4_PRESET = "veryfast"
MP4_THREADS = 2
#: Animated WebP settings: ``method`` 1 is ~2x faster than libwebp's default 4 for ~25 % more
#: bytes, a good trade for a 256 px preview.
WEBP_QUALITY = 70
WEBP_METHOD = 1
POSTER_QUALITY = 88

# FFmpeg/H.264 VUI colour codes (AVColorSpace, AVColorRange, AVColorPrimaries, AVColorTRC).
_AVCOL_SPC_SMPTE170M = 6
_AVCOL_RANGE_MPEG = 1
_AVCOL_PRI_BT709 = 1
_AVCOL_TRC_BT709 = 1


@dataclass(frozen=True)
class VideoInfo:
    """What a clip is: ``codec`` (FFmpeg name, e.g. ``"h264"``, ``"webp"``), ``width`` and
    ``height`` in pixels, ``frames`` (stored frames), ``fps`` (nominal rate), ``duration`` in
    seconds and ``pix_fmt`` (``"yuv420p"``; None where it does not apply)."""

    path: Path
    codec: str
    width: int
    height: int
    frames: int
    fps: float
    duration: float
    pix_fmt: str | None = None


# --- helpers --------------------------------------------------------------------------------

def _check_frame(frame: np.ndarray) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
    return arr


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by replicating the last row/column (4:2:0 needs even sides)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)


class _AtomicPath:
    """A temporary file next to ``path`` that replaces ``path`` only on success."""

    def __init__(self, path: str | os.PathLike[str], suffix: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=suffix,
                                   dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.chmod(self.tmp, 0o644)  # mkstemp makes 0600; clips are shared like result.json
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _fit(size: int, w: int, h: int) -> tuple[int, int]:
    """(width, height) with the longer side ``size``, aspect kept, at least 1 px."""
    scale = size / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _resize(frame: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    if (frame.shape[1], frame.shape[0]) == wh:
        return frame
    # INTER_AREA averages, which avoids the aliasing a bilinear shrink would leave.
    return cv2.resize(frame, wh, interpolation=cv2.INTER_AREA)


# --- MP4 ------------------------------------------------------------------------------------

def write_mp4(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: int, *,
              crf: int = MP4_CRF, preset: str = MP4_PRESET,
              threads: int = MP4_THREADS) -> VideoInfo:
    """Encode ``frames`` (``(H, W, 3)`` uint8 RGB, all the same size) to an H.264 MP4.

    Frames are consumed one at a time.  A frame that is the same array object as the one
    before it (morph holds) reuses its YUV conversion.  Returns the written clip's
    :class:`VideoInfo` (``duration = frames / fps``).  Raises ValueError on no frames, a size
    change or a wrong dtype.
    """
    it = iter(frames)
    try:
        first = _check_frame(next(it))
    except StopIteration:
        raise ValueError("write_mp4: no frames") from None
    raw_hw = first.shape[:2]
    h, w = raw_hw[0] + raw_hw[0] % 2, raw_hw[1] + raw_hw[1] % 2
    count = 0
    with _AtomicPath(path, ".mp4") as tmp:
        with av.open(str(tmp), mode="w", format="mp4",
                     container_options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height = w, h
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            cc = stream.codec_context
            cc.thread_count = threads
            cc.colorspace = _AVCOL_SPC_SMPTE170M
            cc.color_range = _AVCOL_RANGE_MPEG
            cc.color_primaries = _AVCOL_PRI_BT709
            cc.color_trc = _AVCOL_TRC_BT709

            prev_src: np.ndarray | None = None
            prev_yuv: np.ndarray | None = None
            for src in _chain(first, it):
                if src is not prev_src:
                    arr = _check_frame(src)
                    if arr.shape[:2] != raw_hw:
                        raise ValueError(f"frame {count} is {arr.shape[:2]}, expected {raw_hw}")
                    prev_yuv = cv2.cvtColor(np.ascontiguousarray(_even(arr)),
                                            cv2.COLOR_RGB2YUV_I420)
                    prev_src = src
                vf = av.VideoFrame.from_ndarray(prev_yuv, format="yuv420p")
                vf.pts = count
                out.mux(stream.encode(vf))
                count += 1
            out.mux(stream.encode(None))
    return VideoInfo(path=Path(path), codec="h264", width=w, height=h, frames=count,
                     fps=float(fps), duration=count / fps, pix_fmt="yuv420p")


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video back (MP4 via PyAV; animated WebP via Pillow): codec, size, pixel format,
    and the frame count found by decoding every frame (not the header's claim)."""
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return probe_webp(p)
    with av.open(str(p)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = 0
        pix_fmt = None
        width = height = 0
        for frame in container.decode(stream):
            frames += 1
            pix_fmt = frame.format.name
            width, height = frame.width, frame.height
        rate = stream.average_rate or stream.guessed_rate or 0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = frames / float(rate) if rate else 0.0
    return VideoInfo(path=p, codec=codec, width=width or stream.codec_context.width,
                     height=height or stream.codec_context.height, frames=frames,
                     fps=float(rate), duration=duration, pix_fmt=pix_fmt)


# --- WebP -----------------------------------------------------------------------------------

def _webp_durations(n: int, fps: float) -> list[int]:
    """Per-frame durations in ms whose running sum stays on the exact clock (no drift)."""
    return [round((i + 1) * 1000 / fps) - round(i * 1000 / fps) for i in range(n)]


def write_webp(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: float,
               size: int, *, quality: int = WEBP_QUALITY, method: int = WEBP_METHOD) -> VideoInfo:
    """Animated WebP of ``frames`` (``(H, W, 3)`` uint8 RGB) at ``fps``, looping forever.

    Each frame is shrunk so its longer side is ``size`` px (area averaging).  Every frame given
    is shown for ``1 / fps`` s; pass frames already subsampled for a lower rate (see
    :func:`render_clip`).  The returned info counts frames given (``frames``) and the duration;
    the file may store fewer (identical neighbours merged).
    """
    small: list[Image.Image] = []
    prev_src = None
    wh: tuple[int, int] | None = None
    for src in frames:
        if src is prev_src and small:
            small.append(small[-1])
            continue
        arr = _check_frame(src)
        if wh is None:
            wh = _fit(size, arr.shape[1], arr.shape[0])
        small.append(Image.fromarray(np.ascontiguousarray(_resize(arr, wh))))
        prev_src = src
    if not small or wh is None:
        raise ValueError("write_webp: no frames")
    durations = _webp_durations(len(small), fps)
    with _AtomicPath(path, ".webp") as tmp:
        small[0].save(tmp, format="WEBP", save_all=True, append_images=small[1:],
                      duration=durations, loop=0, quality=quality, method=method)
    return VideoInfo(path=Path(path), codec="webp", width=wh[0], height=wh[1],
                     frames=len(small), fps=float(fps), duration=sum(durations) / 1000)


def probe_webp(path: str | os.PathLike[str]) -> VideoInfo:
    """Frames stored in an animated WebP, its size, total duration, and its nominal fps
    (from the shortest frame, approximate: WebP durations are whole milliseconds)."""
    p = Path(path)
    with Image.open(p) as im:
        if im.format != "WEBP":
            raise ValueError(f"{p} is not a WebP file")
        n = getattr(im, "n_frames", 1)
        durations = []
        for i in range(n):
            im.seek(i)
            im.load()  # Pillow fills in the frame's duration when it decodes it
            durations.append(int(im.info.get("duration", 0)))
        width, height = im.size
    duration = sum(durations) / 1000
    # Merged holds last longer than one frame; the shortest frame is the nominal interval.
    shortest = min((d for d in durations if d > 0), default=0)
    return VideoInfo(path=p, codec="webp", width=width, height=height, frames=n,
                     fps=1000 / shortest if shortest else 0.0, duration=duration)


# --- stills ---------------------------------------------------------------------------------

def write_poster(frame: np.ndarray, path: str | os.PathLike[str], *,
                 quality: int = POSTER_QUALITY, webp: bool = False) -> dict[str, Path]:
    """Save ``frame`` (``(H, W, 3)`` uint8 RGB) as a JPEG at ``path`` (and a ``.webp`` beside it
    when ``webp``).  Returns ``{"jpg": path, "webp": path}`` for what was written."""
    arr = np.ascontiguousarray(_check_frame(frame))
    img = Image.fromarray(arr)
    out = {"jpg": Path(path)}
    with _AtomicPath(path, ".jpg") as tmp:
        img.save(tmp, format="JPEG", quality=quality, optimize=True)
    if webp:
        wpath = Path(path).with_suffix(".webp")
        with _AtomicPath(wpath, ".webp") as tmp:
            img.save(tmp, format="WEBP", quality=quality, method=4)
        out["webp"] = wpath
    return out


# --- one pass, two files ------------------------------------------------------------------------

def webp_keep(index: int, fps: float, webp_fps: float) -> bool:
    """Whether frame ``index`` of a ``fps`` clip starts a new slot of a ``webp_fps`` preview:
    the first frame at or after each ``k / webp_fps`` s, so the preview spans the same time."""
    if webp_fps >= fps:
        return True
    return index == 0 or int(index * webp_fps // fps) != int((index - 1) * webp_fps // fps)


def render_clip(frames: Iterable[np.ndarray], out_dir: str | os.PathLike[str], name: str,
                fps: int, webp_size: int, webp_fps: float) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.mp4`` and ``<name>.webp`` from ONE pass over ``frames``.

    Frames go to the MP4 encoder as they come; every frame that opens a ``webp_fps`` slot is
    shrunk to ``webp_size`` on the way and kept (small) for the WebP, written at the end.
    Returns ``{"mp4": path, "webp": path}``.
    """
    out = Path(out_dir)
    rate = min(float(webp_fps), float(fps))
    small: list[np.ndarray] = []
    state: dict[str, object] = {"src": None, "wh": None}

    def tee() -> Iterator[np.ndarray]:
        for i, f in enumerate(frames):
            if webp_keep(i, fps, rate):
                if f is state["src"] and small:
                    small.append(small[-1])  # a hold: same array, same small frame
                else:
                    arr = _check_frame(f)
                    if state["wh"] is None:
                        state["wh"] = _fit(webp_size, arr.shape[1], arr.shape[0])
                    small.append(_resize(arr, state["wh"]))  # type: ignore[arg-type]
                    state["src"] = f
            yield f

    mp4 = out / f"{name}.mp4"
    webp = out / f"{name}.webp"
    write_mp4(tee(), mp4, fps)
    write_webp(small, webp, rate, webp_size)
    return {"mp4": mp4, "webp": webp}
