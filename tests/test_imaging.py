"""Decoding uploads: every awkward fixture, and generated cases for each kind it stands for."""

from __future__ import annotations

import io
import resource
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from lookalike import imaging
from lookalike.config import get_settings
from lookalike.errors import CorruptImage, EmptyFile, ImageTooLarge, InputError, UnsupportedImage
from lookalike.imaging import DecodedImage, decode_image, load_image, sniff_format

WHITE = (255, 255, 255)


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bad_inputs(fixtures_dir: Path) -> Path:
    return fixtures_dir / "bad-inputs"


@pytest.fixture(scope="session")
def baseline(bad_inputs: Path) -> np.ndarray:
    return load_image(bad_inputs / "baseline.jpg").rgb


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def assert_rgb_contract(decoded: DecodedImage) -> None:
    rgb = decoded.rgb
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.flags.c_contiguous
    assert (decoded.height, decoded.width) == rgb.shape[:2]


def asymmetric_rgb(width: int = 48, height: int = 32) -> np.ndarray:
    """Blocky, no symmetry: a wrong rotation or mirror changes many pixels."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(8, axis=0).repeat(8, axis=1))


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# How pixels are stored for each EXIF orientation, given the upright picture (numpy only,
# independent of the Pillow transpose table the decoder uses).
STORED_FOR_ORIENTATION = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1, :],
    5: lambda u: u.swapaxes(0, 1),
    6: lambda u: np.rot90(u, 1),  # shown after turning 90 degrees clockwise
    7: lambda u: np.rot90(u.swapaxes(0, 1), 2),
    8: lambda u: np.rot90(u, -1),  # shown after turning 90 degrees counter-clockwise
}


# --- every fixture file has its documented outcome ----------------------------------------

DECODABLE = {
    "baseline.jpg": "JPEG",
    "exif_orientation_6.jpg": "JPEG",
    "exif_orientation_3.jpg": "JPEG",
    "grayscale_L.jpg": "JPEG",
    "rgba_transparent_border.png": "PNG",
    "cmyk.jpg": "JPEG",
    "iphone.heic": "HEIF",
    "modern.webp": "WEBP",
    "large_12mp.jpg": "JPEG",
    "tiny_face_in_canvas.jpg": "JPEG",
    "two_faces.jpg": "JPEG",
    "no_face_coffee.jpg": "JPEG",
}
REFUSED = {
    "truncated.jpg": CorruptImage,
    "decompression_bomb_30000.png": ImageTooLarge,
    "zero_byte.jpg": EmptyFile,
    "not_an_image.jpg": UnsupportedImage,
}


def test_every_fixture_has_an_expectation(bad_inputs: Path) -> None:
    files = {p.name for p in bad_inputs.iterdir() if p.name != "README.md"}
    assert files == set(DECODABLE) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(DECODABLE))
def test_fixture_decodes(bad_inputs: Path, name: str) -> None:
    decoded = load_image(bad_inputs / name)
    assert_rgb_contract(decoded)
    assert decoded.format == DECODABLE[name]
    assert not decoded.rgb.flags.writeable  # shared safely between pipeline stages


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_fixture_refused_with_code(bad_inputs: Path, name: str) -> None:
    with pytest.raises(REFUSED[name]) as info:
        load_image(bad_inputs / name)
    assert info.value.code == REFUSED[name].code
    assert info.value.advice


@pytest.mark.parametrize("name, orientation", [("exif_orientation_6.jpg", 6), ("exif_orientation_3.jpg", 3)])
def test_fixture_orientation_applied(bad_inputs: Path, baseline: np.ndarray, name: str, orientation: int) -> None:
    decoded = load_image(bad_inputs / name)
    assert decoded.orientation == orientation
    assert mean_abs_diff(decoded.rgb, baseline) < 4
    # The stored pixels really are turned: ignoring the tag would be far off.
    with Image.open(bad_inputs / name) as raw:
        assert mean_abs_diff(np.asarray(raw.convert("RGB")), baseline) > 40


def test_fixture_grayscale_is_three_equal_channels(bad_inputs: Path) -> None:
    rgb = load_image(bad_inputs / "grayscale_L.jpg").rgb
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    assert rgb.std() > 20  # a real picture, not a flat fill


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 128, 255)])
def test_fixture_transparent_border_flattened_onto_background(bad_inputs: Path, background) -> None:
    data = (bad_inputs / "rgba_transparent_border.png").read_bytes()
    alpha = np.asarray(Image.open(io.BytesIO(data)).getchannel("A"))
    assert (alpha == 0).any() and (alpha == 255).any()
    rgb = decode_image(data, background=background).rgb
    assert (rgb[alpha == 0] == background).all()  # no black frame
    source = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(rgb[alpha == 255], source[alpha == 255])


def test_fixture_cmyk_has_plausible_colours(bad_inputs: Path, baseline: np.ndarray) -> None:
    rgb = load_image(bad_inputs / "cmyk.jpg").rgb
    assert mean_abs_diff(rgb, baseline) < 6
    # Skin stays skin: channel means close to the RGB original (inverted CMYK would not).
    assert np.abs(rgb.reshape(-1, 3).mean(0) - baseline.reshape(-1, 3).mean(0)).max() < 5


@pytest.mark.parametrize("name", ["iphone.heic", "modern.webp"])
def test_fixture_heic_and_webp_match_baseline(bad_inputs: Path, baseline: np.ndarray, name: str) -> None:
    assert mean_abs_diff(load_image(bad_inputs / name).rgb, baseline) < 6


def test_fixture_bomb_refused_from_header_fast_and_small(bad_inputs: Path) -> None:
    data = (bad_inputs / "decompression_bomb_30000.png").read_bytes()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data)
    assert time.perf_counter() - start < 1.0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 100  # a decode would need ~900 MB (L) or 2.7 GB (RGB)
    assert "30000x30000" in str(info.value)


def test_fixture_large_photo_reduced_on_request(bad_inputs: Path) -> None:
    data = (bad_inputs / "large_12mp.jpg").read_bytes()
    small = decode_image(data, max_side=640)
    assert max(small.width, small.height) == 640
    assert small.width / small.height == pytest.approx(4032 / 3024, rel=0.01)
    full = decode_image(data)
    assert (full.width, full.height) == (4032, 3024)
    reference = cv2.resize(np.asarray(full.rgb), (small.width, small.height), interpolation=cv2.INTER_AREA)
    assert mean_abs_diff(small.rgb, reference) < 4  # draft decoding keeps the picture


# --- EXIF orientation, every value, every format that carries it ---------------------------


def _save_with_orientation(stored: np.ndarray, fmt: str, orientation: int) -> bytes:
    im = Image.fromarray(np.ascontiguousarray(stored))
    if fmt == "TIFF":
        return encode(im, "TIFF", tiffinfo={0x0112: orientation})
    if fmt == "JPEG":
        return encode(im, "JPEG", quality=95, subsampling=0, exif=exif_with_orientation(orientation))
    if fmt == "WEBP":
        return encode(im, "WEBP", lossless=True, exif=exif_with_orientation(orientation))
    return encode(im, fmt, exif=exif_with_orientation(orientation))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_made_upright(fmt: str, orientation: int) -> None:
    upright = asymmetric_rgb()
    data = _save_with_orientation(STORED_FOR_ORIENTATION[orientation](upright), fmt, orientation)
    decoded = decode_image(data)
    assert decoded.orientation == orientation
    assert decoded.rgb.shape == upright.shape
    tolerance = 6 if fmt == "JPEG" else 0
    assert mean_abs_diff(decoded.rgb, upright) <= tolerance


def test_heif_container_rotation_applied_once() -> None:
    # Pillow's HEIF writer stores the pixels turned, with an irot box and EXIF tag 6, as
    # phones do; libheif turns them back, so EXIF must not be applied a second time.
    upright = asymmetric_rgb(64, 32)
    data = encode(Image.fromarray(upright), "HEIF", quality=95, exif=exif_with_orientation(6))
    decoded = decode_image(data)
    assert decoded.format == "HEIF"
    assert decoded.orientation == 6
    assert decoded.rgb.shape == upright.shape
    assert mean_abs_diff(decoded.rgb, upright) < 6


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_unreadable_exif_does_not_lose_the_photo() -> None:
    data = bytearray(encode(Image.fromarray(asymmetric_rgb()), "JPEG", exif=b"Exif\x00\x00MM\x00*garbage"))
    decoded = decode_image(bytes(data))
    assert decoded.orientation == 1 and decoded.rgb.shape == (32, 48, 3)


# --- every pixel mode becomes 8-bit RGB, rescaled not clipped ------------------------------

RAMP16 = (np.arange(32 * 64, dtype=np.uint32).reshape(32, 64) * 32 + 17).astype(np.uint16)  # 17..65521: every high byte


def test_16bit_grey_png_rescaled() -> None:
    ok, png = cv2.imencode(".png", RAMP16)
    assert ok
    decoded = decode_image(png.tobytes())
    expected = (RAMP16 >> 8).astype(np.uint8)
    assert np.array_equal(decoded.rgb[..., 0], expected)
    assert np.array_equal(decoded.rgb[..., 1], expected) and np.array_equal(decoded.rgb[..., 2], expected)


def test_16bit_grey_extremes() -> None:
    grey = np.array([[0, 255, 256, 32768, 65280, 65535]], dtype=np.uint16)
    ok, png = cv2.imencode(".png", grey)
    assert ok
    assert decode_image(png.tobytes()).rgb[0, :, 0].tolist() == [0, 0, 1, 128, 255, 255]


def test_16bit_rgb_png_rescaled() -> None:
    rgb16 = np.stack([RAMP16, RAMP16[::-1], 65535 - RAMP16], axis=-1)
    ok, png = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV writes BGR
    assert ok
    assert np.array_equal(decode_image(png.tobytes()).rgb, (rgb16 >> 8).astype(np.uint8))


def test_16bit_rgba_png_rescaled_and_flattened() -> None:
    rgb16 = np.stack([RAMP16, RAMP16[::-1], 65535 - RAMP16], axis=-1)
    alpha = np.full(RAMP16.shape, 65535, np.uint16)
    alpha[:, :8] = 0
    bgra = np.concatenate([rgb16[..., ::-1], alpha[..., None]], axis=-1)
    ok, png = cv2.imencode(".png", bgra)
    assert ok
    rgb = decode_image(png.tobytes(), background=(10, 20, 30)).rgb
    assert (rgb[:, :8] == (10, 20, 30)).all()
    assert np.array_equal(rgb[:, 8:], (rgb16[:, 8:] >> 8).astype(np.uint8))


def test_16bit_grey_tiff_rescaled() -> None:
    ok, tif = cv2.imencode(".tiff", RAMP16)
    assert ok
    with Image.open(io.BytesIO(tif.tobytes())) as im:
        assert im.mode.startswith("I;16")
    decoded = decode_image(tif.tobytes())
    assert decoded.format == "TIFF"
    assert np.array_equal(decoded.rgb[..., 1], (RAMP16 >> 8).astype(np.uint8))


def test_int32_tiff_holding_16bit_values_rescaled() -> None:
    data = encode(Image.fromarray(RAMP16.astype(np.int32), "I"), "TIFF")
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "I"
    assert np.array_equal(decode_image(data).rgb[..., 0], (RAMP16 >> 8).astype(np.uint8))


def test_float_tiff_rescaled() -> None:
    values = np.linspace(0.0, 1.0, 32 * 64, dtype=np.float32).reshape(32, 64)
    data = encode(Image.fromarray(values, "F"), "TIFF")
    rgb = decode_image(data).rgb
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert np.array_equal(rgb[..., 0], np.rint(values * 255).astype(np.uint8))


def _palette_image(colour: tuple[int, int, int]) -> Image.Image:
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, *colour])
    return im


@pytest.mark.parametrize(
    "mode, make, expected",
    [
        ("1", lambda: Image.new("1", (4, 4), 1), (255, 255, 255)),
        ("L", lambda: Image.new("L", (4, 4), 77), (77, 77, 77)),
        ("P", lambda: _palette_image((200, 100, 50)), (200, 100, 50)),
        ("CMYK", lambda: Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0)),
        ("YCbCr", lambda: Image.new("RGB", (4, 4), (200, 100, 50)).convert("YCbCr"), (200, 100, 50)),
        ("LAB", lambda: Image.new("RGB", (4, 4), (200, 100, 50)).convert("LAB"), (200, 100, 50)),
        ("HSV", lambda: Image.new("RGB", (4, 4), (200, 100, 50)).convert("HSV"), (200, 100, 50)),
        ("RGBA", lambda: Image.new("RGBA", (4, 4), (200, 100, 50, 0)), WHITE),
        ("RGBa", lambda: Image.new("RGBa", (4, 4), (100, 50, 25, 128)), (227, 177, 152)),
        ("LA", lambda: Image.new("LA", (4, 4), (0, 128)), (127, 127, 127)),
        ("La", lambda: Image.new("La", (4, 4), (64, 128)), (191, 191, 191)),
        ("PA", lambda: Image.new("PA", (4, 4), (0, 0)), WHITE),
        ("I;16", lambda: Image.new("I;16", (4, 4), 65535), (255, 255, 255)),
        ("I;16B", lambda: Image.new("I;16B", (4, 4), 0x8000), (128, 128, 128)),
        ("I", lambda: Image.new("I", (4, 4), 0x4000), (64, 64, 64)),
        ("F", lambda: Image.new("F", (4, 4), 0.5), (128, 128, 128)),
    ],
)
def test_every_mode_to_rgb(mode: str, make, expected) -> None:
    im = make()
    assert im.mode == mode
    rgb = np.asarray(imaging._to_rgb(im, WHITE))
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - expected).max() <= 2, rgb[0, 0]


def test_int_mode_outside_16bit_range_is_stretched_not_clipped() -> None:
    im = Image.fromarray(np.array([[-1000, 0, 99000]], dtype=np.int32), "I")
    assert np.asarray(imaging._to_rgb(im, WHITE))[0, :, 0].tolist() == [0, 3, 255]  # (0 + 1000) * 255 / 100000 = 2.55


def test_cmyk_jpeg_adobe_inverted_colours() -> None:
    # Pillow writes CMYK JPEGs the Adobe way (inverted, APP14 marker), like Photoshop.
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red ink
    data = encode(cmyk, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as im:
        assert im.info.get("adobe") is not None
    rgb = decode_image(data).rgb
    assert np.abs(rgb.reshape(-1, 3).mean(0) - (255, 0, 0)).max() < 8


def test_palette_gif_with_transparency_flattened() -> None:
    p = Image.new("P", (16, 16), 1)
    p.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    p.paste(0, (0, 0, 16, 8))  # top half uses the transparent index
    data = encode(p, "GIF", transparency=0)
    rgb = decode_image(data, background=(10, 20, 30)).rgb
    assert (rgb[:8] == (10, 20, 30)).all()
    assert (rgb[8:] == (200, 30, 40)).all()


def test_palette_png_with_alpha_palette_flattened() -> None:
    p = Image.new("P", (8, 8), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.paste(1, (0, 0, 8, 4))
    data = encode(p, "PNG", transparency=bytes([255, 0]))  # index 1 fully transparent
    rgb = decode_image(data).rgb
    assert (rgb[:4] == WHITE).all() and (rgb[4:] == (255, 0, 0)).all()


def test_la_png_blended_onto_background() -> None:
    la = np.zeros((4, 3, 2), np.uint8)
    la[..., 0] = 100
    la[..., 1] = [[0, 128, 255]] * 4
    data = encode(Image.fromarray(la, "LA"), "PNG")
    row = decode_image(data, background=(200, 200, 200)).rgb[0, :, 0].astype(int)
    assert abs(row[0] - 200) <= 1 and abs(row[1] - 150) <= 1 and row[2] == 100


def test_bmp_round_trip() -> None:
    upright = asymmetric_rgb()
    data = encode(Image.fromarray(upright), "BMP")
    decoded = decode_image(data)
    assert decoded.format == "BMP"
    assert np.array_equal(decoded.rgb, upright)


def test_multi_frame_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50)
    rgb = decode_image(buf.getvalue()).rgb
    assert (rgb == (255, 0, 0)).all()


def test_lossy_webp_with_alpha_flattened() -> None:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[8:24, 8:24, 3] = 255
    rgb = decode_image(encode(Image.fromarray(rgba, "RGBA"), "WEBP", quality=90)).rgb
    assert (rgb[0, 0] >= 250).all()  # transparent corner is white, not black
    assert rgb[16, 16, 1] > 240 and rgb[16, 16, 0] < 15


# --- refused: corrupt, unsupported, empty, too large ---------------------------------------


def _noise_png() -> bytes:
    noise = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    return encode(Image.fromarray(noise), "PNG")


def test_truncated_png_is_corrupt() -> None:
    data = _noise_png()
    with pytest.raises(CorruptImage):
        decode_image(data[: int(len(data) * 0.6)])


def test_truncated_jpeg_is_corrupt_also_when_reduced() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG")
    cut = data[: len(data) // 2]
    with pytest.raises(CorruptImage):
        decode_image(cut)
    with pytest.raises(CorruptImage):
        decode_image(cut, max_side=64)  # draft mode still reads to the end


def test_png_with_broken_chunk_is_corrupt() -> None:
    data = bytearray(_noise_png())
    data[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    with pytest.raises(CorruptImage):
        decode_image(bytes(data))


def test_damaged_heic_is_corrupt(bad_inputs: Path) -> None:
    data = (bad_inputs / "iphone.heic").read_bytes()
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) // 2])


def test_garbage_after_jpeg_magic_is_corrupt_without_bytes_in_message() -> None:
    garbage = b"\xff\xd8\xff" + bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8))
    with pytest.raises(CorruptImage) as info:
        decode_image(garbage)
    message = str(info.value)
    assert "JPEG" in message and "\\x" not in message and "b'" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "data, hint",
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF"),
        (b"<!DOCTYPE html><html><body>moved</body></html>", "web page"),
        (b"   \n\t  ", "text"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
        (b"BMW is not a bitmap, even if it starts with BM", "text"),
        (bytes(range(256)) * 4, "not a known image format"),
    ],
)
def test_not_an_accepted_format(data: bytes, hint: str) -> None:
    with pytest.raises(UnsupportedImage) as info:
        decode_image(data)
    message = str(info.value)
    assert hint in message
    for name in ("JPEG", "PNG", "WebP", "HEIC", "GIF", "BMP", "TIFF"):
        assert name in message


def test_empty_bytes() -> None:
    with pytest.raises(EmptyFile):
        decode_image(b"")


def test_over_max_bytes_refused_before_anything_else() -> None:
    with pytest.raises(ImageTooLarge) as info:
        decode_image(b"%PDF" + b"\x00" * 2000, max_bytes=1000)
    assert "MiB" in str(info.value)
    decode_image(encode(Image.new("RGB", (8, 8)), "PNG"), max_bytes=1000)  # under: fine


def test_max_pixels_is_per_call() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    decode_image(data, max_pixels=10_000)
    with pytest.raises(ImageTooLarge, match="100x100"):
        decode_image(data, max_pixels=9_999)


def _gif_header(width: int, height: int) -> bytes:
    """A GIF whose logical screen is huge and whose one frame is 1x1."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 6
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def _bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + b"\x00" * 64


def _webp_header(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 33  # RIFF chunks have even length
    return b"RIFF" + struct.pack("<I", 12 + len(vp8l)) + b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))


@pytest.mark.parametrize(
    "data, fmt",
    [
        (_gif_header(60000, 60000), "GIF"),  # beyond Pillow's own guard too
        (_bmp_header(20000, 20000), "BMP"),
        (_bmp_header(20000, -20000), "BMP"),  # top-down BMP: negative height
        (_webp_header(16383, 16383), "WEBP"),
        (_png_header(20000, 20000), "PNG"),
    ],
)
def test_pixel_bombs_in_every_format_refused_from_header(data: bytes, fmt: str) -> None:
    assert sniff_format(data) == fmt
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data)
    assert time.perf_counter() - start < 1.0
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024 < 100
    assert "megapixels" in str(info.value)


# --- format sniffing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, params",
    [("JPEG", {}), ("PNG", {}), ("WEBP", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("HEIF", {"quality": 50})],
)
def test_sniff_recognises_real_files(fmt: str, params: dict) -> None:
    data = encode(Image.new("RGB", (16, 16), (1, 2, 3)), fmt, **params)
    assert sniff_format(data) == fmt
    assert decode_image(data).format == fmt


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"GIF88a....", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp41"],
)
def test_sniff_rejects_lookalikes(data: bytes) -> None:
    assert sniff_format(data) is None


def test_errors_are_input_errors_with_stable_codes(bad_inputs: Path) -> None:
    codes = set()
    for name, cls in REFUSED.items():
        with pytest.raises(InputError) as info:
            load_image(bad_inputs / name)
        assert isinstance(info.value, cls)
        codes.add(info.value.code)
    assert codes == {"corrupt_image", "image_too_large", "empty_file", "unsupported_image"}


# --- load_image reads the settings --------------------------------------------------------


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch):
    def apply(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"LOOKALIKE_{key.upper()}", value)
        get_settings.cache_clear()

    yield apply
    get_settings.cache_clear()


def test_load_image_uses_settings_limits(tmp_path: Path, settings_env) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.new("RGBA", (40, 30), (0, 0, 0, 0)), "PNG"))
    settings_env(background_rgb="[1,2,3]")
    assert (load_image(path).rgb == (1, 2, 3)).all()
    settings_env(max_image_pixels="1000")
    with pytest.raises(ImageTooLarge, match="40x30"):
        load_image(path)
    settings_env(max_image_pixels="50000000", max_upload_bytes="10")
    with pytest.raises(ImageTooLarge, match="MiB"):
        load_image(path)


def test_load_image_trusts_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(encode(Image.new("RGB", (8, 8), (9, 9, 9)), "PNG"))
    assert load_image(path).format == "PNG"


def test_bomb_between_pillow_warning_and_error_limits() -> None:
    # Pillow warns (does not raise) here; our own header check still refuses, with sizes.
    data = _png_header(40000, 40000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLarge, match="40000x40000"):
        decode_image(data, max_pixels=10**12)  # the per-call limit is capped at the ceiling


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_promoted_to_error_is_still_image_too_large() -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(_png_header(40000, 40000))


def test_truncation_detected_even_if_someone_enabled_lenient_loading(
    bad_inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(CorruptImage):
        decode_image((bad_inputs / "truncated.jpg").read_bytes())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("value", [0, 9, 300])
def test_out_of_range_orientation_ignored(value: int) -> None:
    upright = asymmetric_rgb()
    data = encode(Image.fromarray(upright), "PNG", exif=exif_with_orientation(value))
    decoded = decode_image(data)
    assert decoded.orientation == 1 and np.array_equal(decoded.rgb, upright)


def test_multi_picture_jpeg_gives_first_picture() -> None:
    # Phones often write MPO (a JPEG followed by more JPEGs); it is still a JPEG upload.
    first, second = Image.new("RGB", (16, 16), (250, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 250))
    data = encode(first, "MPO", save_all=True, append_images=[second])
    decoded = decode_image(data)
    assert decoded.format == "JPEG"
    assert np.abs(decoded.rgb.reshape(-1, 3).mean(0) - (250, 0, 0)).max() < 6


@pytest.mark.parametrize(
    "kwargs", [{"max_side": 0}, {"max_pixels": 0}, {"background": (0, 0, 256)}, {"background": (1, 2)}]
)
def test_programming_errors_are_not_input_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        decode_image(encode(Image.new("RGB", (4, 4)), "PNG"), **kwargs)
