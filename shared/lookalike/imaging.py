"""The one place where uploaded bytes become pixels.

Every front door (API, CLI, workers) hands the raw bytes of a photo to :func:`decode_image`
(or a path to :func:`load_image`) and gets back a :class:`DecodedImage`: an upright, 8-bit,
3-channel RGB array. Everything a user can get wrong about a file ends here as one of the
typed errors of :mod:`lookalike.errors`, never as a Pillow exception:

* the format is decided from the magic bytes, never from the file name
  (``UnsupportedImage`` for HTML named ``.jpg``, PDFs, AVIF, ...);
* size limits are checked before any pixel is decoded: file bytes, then width*height from
  the lazily read header, so a 1 MB PNG claiming 30000x30000 pixels costs nothing
  (``ImageTooLarge``);
* truncated or damaged data is detected by forcing a full decode with Pillow's
  ``LOAD_TRUNCATED_IMAGES`` off (``CorruptImage``);
* the EXIF orientation is applied, alpha is flattened onto a known background, and every
  pixel mode (palette, CMYK, 16-bit, float, ...) is rescaled -- never clipped -- to 8-bit RGB;
* HEIC/HEIF goes through pillow-heif (libheif): the container's own rotation is applied by
  libheif and the EXIF tag is not applied a second time;
* GIF, WebP, TIFF, HEIF and MPO files with several pictures give their first (primary) one.

Colour profiles (ICC) are not applied: pixels are taken as sRGB, CMYK is converted with
Pillow's plain formula. That is accurate enough for face analysis and keeps decoding fast.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps

from lookalike.config import get_settings
from lookalike.errors import CorruptImage, EmptyFile, ImageTooLarge, LookalikeError, UnsupportedImage

try:  # HEIC support is optional at run time: without it HEIC is refused with 415, not a 500.
    import pillow_heif
except ImportError:  # pragma: no cover - pillow-heif is a pinned dependency
    pillow_heif = None
else:
    # Registering twice is harmless, but doing it once at import keeps decode_image free of
    # global side effects.
    pillow_heif.register_heif_opener()

__all__ = ["ACCEPTED_FORMATS", "DecodedImage", "decode_image", "load_image", "sniff_format"]

log = logging.getLogger(__name__)

ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIF", "GIF", "BMP", "TIFF")
_ACCEPTED_WORDS = "JPEG, PNG, WebP, HEIC/HEIF, GIF, BMP or TIFF"

# Pillow's own bomb guard is process-wide and fires inside Image.open, before we see the
# header, so it would pre-empt the per-call ``max_pixels`` (and report no dimensions). It is
# kept only as a far backstop: above this ceiling nothing is decoded whatever the caller
# asks, and the per-call limit is capped to it so Pillow's warning can only fire for images
# we refuse anyway.
PIXEL_CEILING = 1 << 30  # ~1.07 gigapixels, ~3.2 GB as RGB
Image.MAX_IMAGE_PIXELS = PIXEL_CEILING

# A truncated upload must fail, not decode as a grey lower half.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Exceptions Pillow and its plugins raise for malformed data (UnidentifiedImageError is an
# OSError; pillow-heif raises ValueError/RuntimeError; struct/zlib errors leak from parsers).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, SyntaxError, ValueError, EOFError, RuntimeError,
    struct.error, zlib.error, IndexError, KeyError, TypeError,
)

# Brands of an ISO-BMFF ``ftyp`` box that mean HEVC-coded HEIF (what phones send).
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
# Generic HEIF brands: HEIF unless the file also says it is AVIF (not accepted).
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# BMP info-header sizes Pillow can read (the 4 bytes after the 14-byte file header).
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


@dataclass(frozen=True)
class DecodedImage:
    """An upright 8-bit RGB photo.

    ``rgb`` is read-only (it may be shared by detection, alignment and rendering); take a
    copy before drawing on it.
    """

    rgb: np.ndarray  # (H, W, 3) uint8, C-contiguous, upright
    format: str  # one of ACCEPTED_FORMATS, detected from the bytes
    width: int  # of rgb
    height: int  # of rgb
    orientation: int  # EXIF orientation that was applied (1 if none)


# --- format -------------------------------------------------------------------------------


def sniff_format(data: bytes) -> str | None:
    """The accepted format the magic bytes announce, or None; the file name is never used."""
    head = bytes(data[:64])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_DIB_SIZES:
        return "BMP"
    if _is_heif(data):
        return "HEIF"
    return None


def _is_heif(data: bytes) -> bool:
    """True for an ISO-BMFF file whose ``ftyp`` box names a HEIF (not AVIF) brand."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return False
    box_size = struct.unpack(">I", data[:4])[0]
    end = min(box_size, len(data), 256)  # brands live in the first few dozen bytes
    major = bytes(data[8:12])
    compatible = {bytes(data[i:i + 4]) for i in range(16, end - 3, 4)}
    brands = compatible | {major}
    if brands & _HEIC_BRANDS:
        return True
    return major in _GENERIC_HEIF_BRANDS and not brands & _AVIF_BRANDS


def _describe_unknown(data: bytes) -> str:
    """A few plain words on what an unaccepted file seems to be (never its bytes)."""
    head = bytes(data[:512])
    if head.lstrip().startswith(b"%PDF"):
        return "it looks like a PDF document"
    if len(data) >= 12 and data[4:8] == b"ftyp" and {bytes(data[8:12])} & _AVIF_BRANDS:
        return "it looks like an AVIF image"
    if head.lstrip()[:1] == b"<":
        return "it looks like a web page or other text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "its contents are not a known image format"
    return "it looks like text"


# --- limits -------------------------------------------------------------------------------


def _check_byte_size(size: int, max_bytes: int | None) -> None:
    if size == 0:
        raise EmptyFile("The file is empty (0 bytes).")
    if max_bytes is not None and size > max_bytes:
        raise ImageTooLarge(
            f"The file is {_mb(size)} but at most {_mb(max_bytes)} is accepted.")


def _refuse_pixel_bomb(im: Image.Image, max_pixels: int) -> None:
    """Refuse from the header alone, before a single pixel is decoded."""
    width, height = im.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"at most {max_pixels / 1e6:.0f} megapixels are accepted.")


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


# --- decoding -----------------------------------------------------------------------------


@contextmanager
def _pillow_errors(fmt: str, stage: str) -> Iterator[None]:
    """Turn whatever Pillow raises for bad data into a typed error with a plain message.

    The original exception is not chained: Pillow's messages can quote header bytes, and
    no bytes of a user's image may reach messages or logs. Only its class name is logged.
    """
    try:
        yield
    except LookalikeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"The image has more than {PIXEL_CEILING / 1e6:.0f} megapixels and is refused "
            "as a possible decompression bomb.") from None
    except MemoryError:
        raise ImageTooLarge("The image is too large to decode in the memory available.") from None
    except _DECODE_ERRORS as exc:
        log.info("could not %s %s image: %s", stage, fmt, type(exc).__name__)
        if stage == "open":
            message = f"The file starts like a {_format_word(fmt)} image but its header is damaged."
        else:
            message = f"The {_format_word(fmt)} image is damaged or incomplete (cut off during upload?)."
        raise CorruptImage(message) from None


def _format_word(fmt: str) -> str:
    return {"WEBP": "WebP", "HEIF": "HEIC/HEIF"}.get(fmt, fmt)


def _ensure_strict_loading() -> None:
    # Another module flipping this global would make truncated uploads decode silently.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set; resetting it to False")
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def _open_lazy(data: bytes, fmt: str) -> Image.Image:
    """Parse the header only; ``formats`` stops Pillow from guessing other plugins."""
    if fmt == "HEIF" and pillow_heif is None:  # pragma: no cover - dependency is pinned
        raise UnsupportedImage("HEIC/HEIF photos cannot be read on this server; send a JPEG or PNG.")
    # BytesIO over bytes shares the buffer: no copy of the upload.
    return Image.open(io.BytesIO(data), formats=[fmt])


def _jpeg_draft(im: Image.Image, max_side: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while staying >= the requested size."""
    width, height = im.size
    scale = max_side / max(width, height)
    if scale < 1:
        im.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))


def _read_orientation(im: Image.Image, fmt: str) -> int:
    """The EXIF orientation (1..8); damaged EXIF must not cost the user their photo."""
    if fmt == "HEIF":
        # libheif applies the container's irot/imir itself and pillow-heif resets the EXIF
        # tag to 1 (HEIF readers must not apply EXIF on top). Report the tag the file carried,
        # which phones keep equal to the container rotation.
        value = im.info.get("original_orientation") or 1
    else:
        try:
            value = im.getexif().get(ExifTags.Base.Orientation, 1)
        except _DECODE_ERRORS + (UnicodeDecodeError,) as exc:
            log.info("ignoring unreadable EXIF in %s image: %s", fmt, type(exc).__name__)
            return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# EXIF orientation -> the transpose that undoes it (the table exif_transpose uses).
_TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _apply_orientation(im: Image.Image, orientation: int) -> Image.Image:
    """Make the image upright. HEIF is excluded by the caller: libheif already did it."""
    if orientation == 1:
        return im  # exif_transpose would return a needless copy
    try:
        # Also rewrites the EXIF/XMP tag so nothing downstream rotates twice.
        return ImageOps.exif_transpose(im)
    except _DECODE_ERRORS + (UnicodeDecodeError,) as exc:
        # Re-serialising a damaged EXIF block can fail; the pixels still need turning.
        log.info("exif_transpose failed (%s); rotating without EXIF", type(exc).__name__)
        return im.transpose(_TRANSPOSE_FOR_ORIENTATION[orientation])


# --- pixel modes --------------------------------------------------------------------------


def _to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, rescaling deep modes and flattening transparency."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I") or mode == "F":
        # Deep grey (16/32-bit int, float): Pillow's own convert clips at 255.
        return Image.fromarray(_deep_grey_to_uint8(np.asarray(im), mode), "L").convert("RGB")
    if mode in _ALPHA_MODES or im.has_transparency_data:
        if mode == "La":  # premultiplied grey: Pillow converts it only via LA
            im = im.convert("LA")
        return _flatten(im.convert("RGBA"), background)
    try:
        # 1, L, P, CMYK (Adobe-inverted CMYK JPEGs are un-inverted by the JPEG plugin),
        # YCbCr, LAB, HSV, RGBX.
        return im.convert("RGB")
    except ValueError:
        raise UnsupportedImage(
            f"The image uses a pixel layout ({mode}) that cannot be converted to colour.") from None


def _flatten(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Alpha-composite onto the background, so transparent borders don't turn black."""
    canvas = Image.new("RGB", rgba.size, background)
    canvas.paste(rgba, (0, 0), rgba)  # the image's own alpha is the paste mask
    return canvas


def _deep_grey_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Rescale (never clip) one deep grey channel to 0..255.

    Integers use the range of their storage type (16-bit: 65535 -> 255, i.e. >> 8, as
    Pillow does for 16-bit RGB). Pillow's 32-bit "I" mode mostly carries 16-bit data, so
    values within 0..65535 are treated as 16-bit; anything else is stretched min..max.
    Float uses the smallest of 0..1, 0..255, 0..65535 that holds the data, else min..max.
    """
    if values.dtype.kind == "u" and mode != "I":
        return (values >> (8 * values.itemsize - 8)).astype(np.uint8)
    if values.dtype.kind == "i" and mode != "I":
        info = np.iinfo(values.dtype)
        shifted = values.astype(np.int64) - info.min
        return (shifted >> (8 * values.itemsize - 8)).astype(np.uint8)
    if mode == "I":
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi <= 65535:
            return (values >> 8).astype(np.uint8)
        return _stretch(values.astype(np.float64), lo, hi)
    finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0:
        for top in (1.0, 255.0, 65535.0):
            if hi <= top:
                return np.rint(finite * (255.0 / top)).astype(np.uint8)
    return _stretch(finite, lo, hi)


def _stretch(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _fit_long_side(im: Image.Image, max_side: int) -> Image.Image:
    width, height = im.size
    if max(width, height) <= max_side:
        return im
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # LANCZOS after a cheap integer box reduction: same look, a fraction of the time.
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


# --- public entry points ------------------------------------------------------------------


def decode_image(
    data: bytes,
    *,
    max_pixels: int = 50_000_000,
    max_bytes: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    max_side: int | None = None,
) -> DecodedImage:
    """Decode an upload into upright 8-bit RGB, or raise a typed InputError.

    ``max_side``, when set, returns an image whose long side is at most that many pixels
    (JPEGs are then decoded at reduced scale by libjpeg, which is much faster).
    """
    if max_pixels <= 0:
        raise ValueError("max_pixels must be positive")
    if max_side is not None and max_side < 1:
        raise ValueError("max_side must be at least 1")
    if len(background) != 3 or not all(0 <= int(c) <= 255 for c in background):
        raise ValueError("background must be three values in 0..255")

    _check_byte_size(len(data), max_bytes)
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImage(
            f"The file is not a photo we can read ({_describe_unknown(data)}); "
            f"send a {_ACCEPTED_WORDS} image.")
    _ensure_strict_loading()

    with _pillow_errors(fmt, "open"):
        im = _open_lazy(data, fmt)
    try:
        _refuse_pixel_bomb(im, min(max_pixels, PIXEL_CEILING))
        if max_side is not None and fmt == "JPEG":
            _jpeg_draft(im, max_side)
        # Pillow's TIFF loader turns the pixels itself and drops the tag, so read it first.
        # Other formats are read after load: PNG's getexif() would otherwise run the decode
        # outside the error mapping below.
        declared = _read_orientation(im, fmt) if fmt == "TIFF" else 1
        with _pillow_errors(fmt, "decode"):
            im.load()  # full decode: this is where truncation is detected
        remaining = _read_orientation(im, fmt)
        # HEIF: libheif already applied the container's rotation; EXIF is informational.
        upright = im if fmt == "HEIF" else _apply_orientation(im, remaining)
        orientation = remaining if remaining != 1 else declared
        rgb_image = _to_rgb(upright, tuple(int(c) for c in background))
        if max_side is not None:
            rgb_image = _fit_long_side(rgb_image, max_side)
        rgb = np.asarray(rgb_image)  # one copy out of Pillow; read-only, C-contiguous
    finally:
        im.close()

    if rgb.flags.writeable:  # the numpy-built paths; keep the contract uniform
        rgb.flags.writeable = False
    height, width = rgb.shape[:2]
    return DecodedImage(rgb=rgb, format=fmt, width=width, height=height, orientation=orientation)


def load_image(path: str | os.PathLike[str], *, max_side: int | None = None) -> DecodedImage:
    """Read a photo file and decode it with the limits and background from the settings.

    A missing or unreadable path raises the usual OSError: that is the caller's mistake,
    not a property of the photo.
    """
    settings = get_settings()  # read at call time, so tests and services can change them
    path = Path(path)
    # Refuse an oversized file before reading it into memory.
    _check_byte_size(path.stat().st_size, settings.max_upload_bytes)
    return decode_image(
        path.read_bytes(),
        max_pixels=settings.max_image_pixels,
        max_bytes=settings.max_upload_bytes,
        background=tuple(settings.background_rgb),
        max_side=max_side,
    )
