"""Warm per-stage times of one job on this machine: decode, detect, landmarks, align, embed,
search, render (frame generation), encode (MP4 + WebP + poster), and the whole job.

    python bench/pipeline.py --fixtures ../shared/fixtures [--backend dlib] [--write docs/BENCHMARKS.md]
    python bench/pipeline.py --backend onnx --onnx-pack ~/models/buffalo_l   # a real insightface pack
    python bench/pipeline.py --backend onnx --tiny-onnx                     # tiny stand-in models

The job is the product's default: a 1 MP JPEG (a fixture photo resized in memory), top-5
matches against the fixture gallery, two 2-second 512 px morphs (good and bad news) and the
smile clip at 25 fps. Every stage runs ``--repeat`` times after one warm-up; medians are shown.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from _report import machine, write_section  # noqa: E402


def one_megapixel_jpeg(path: Path) -> bytes:
    img = Image.open(path).convert("RGB")
    scale = (1_000_000 / (img.width * img.height)) ** 0.5
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def timed(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def tiny_pack_for(data: bytes) -> Path:
    """The tests' tiny SCRFD/ArcFace stand-ins, the detector set to fire on this photo's face.

    The stand-in detector answers with planted anchors, so the bench plants one on the face
    dlib finds in the (reduced) photo; the recogniser is a small random CNN of ArcFace's shape.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from onnx_models import build_pack, fire_at

    from lookalike.config import get_settings
    from lookalike.faces import get_backend
    from lookalike.faces.analyze import detect_faces
    from lookalike.faces.arcface import keypoints5_from_68
    from lookalike.faces.landmarks import landmarks68
    from lookalike.faces.scrfd import letterbox
    from lookalike.imaging import decode_image

    rgb = decode_image(data).rgb
    h, w = rgb.shape[:2]
    box = detect_faces(rgb, backend=get_backend("dlib"))[0].box
    kps = keypoints5_from_68(landmarks68(rgb, box))
    reduce = min(1.0, get_settings().detect_max_side / max(h, w))
    _, det_scale = letterbox(np.zeros((round(h * reduce), round(w * reduce), 3), np.uint8), (640, 640))
    to_canvas = reduce * det_scale
    corners = np.array([box.left, box.top, box.right, box.bottom]) * to_canvas
    return build_pack(Path(tempfile.mkdtemp(prefix="lookalike-tiny-onnx-")),
                      [fire_at(corners, kps * to_canvas, score=0.93)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "fixtures")
    ap.add_argument("--photo", default="faces/Unnamed_B/1.jpg", help="fixture resized to 1 MP")
    ap.add_argument("--backend", choices=["dlib", "onnx"], default=None)
    ap.add_argument("--onnx-pack", type=Path, help="insightface-style pack folder for --backend onnx "
                    "(default: $LOOKALIKE_ONNX_MODEL_DIR)")
    ap.add_argument("--tiny-onnx", action="store_true",
                    help="--backend onnx with the tests' tiny stand-in models (built in a temp folder): "
                         "times the ONNX code path and a small CNN, not a real pack's accuracy")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", type=Path, help="update this markdown file's pipeline section")
    args = ap.parse_args()
    if args.tiny_onnx:
        args.backend = "onnx"
    if args.backend:
        os.environ["LOOKALIKE_FACE_BACKEND"] = args.backend
    if args.onnx_pack:
        os.environ["LOOKALIKE_ONNX_MODEL_DIR"] = str(args.onnx_pack.expanduser())
    data = one_megapixel_jpeg(args.fixtures / args.photo)
    if args.tiny_onnx:
        os.environ["LOOKALIKE_ONNX_MODEL_DIR"] = str(tiny_pack_for(data))
        from lookalike.config import get_settings

        get_settings.cache_clear()  # tiny_pack_for read the settings before the pack existed

    from lookalike.config import get_settings
    from lookalike.faces import get_backend
    from lookalike.faces.align import align_face
    from lookalike.faces.analyze import detect_faces
    from lookalike.faces.landmarks import landmarks68
    from lookalike.gallery import import_folder
    from lookalike.imaging import decode_image
    from lookalike.job import load_index, run_job
    from lookalike.morph import morph_frames, smile_frames, timeline
    from lookalike.render import smile_timeline
    from lookalike.video import render_clip

    settings = get_settings()
    backend = get_backend()
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    print("building the fixture gallery…", file=sys.stderr)
    import_folder(args.fixtures / "faces", work / "gallery", workers=2)
    index = load_index(work / "gallery", settings)
    r = args.repeat

    rows: list[tuple[str, float]] = []
    t_decode, image = timed(lambda: decode_image(data).rgb, r)
    rows.append(("decode (1 MP JPEG)", t_decode))
    t_detect, dets = timed(lambda: detect_faces(image, backend=backend, max_side=settings.detect_max_side), r)
    rows.append((f"detect (long side ≤ {settings.detect_max_side})", t_detect))
    box = dets[0]
    t_lm, pts = timed(lambda: landmarks68(image, box.box), r)
    rows.append(("68 landmarks", t_lm))
    t_align, (crop, al) = timed(lambda: align_face(image, pts, settings.align_size), r)
    rows.append((f"align ({settings.align_size} px)", t_align))
    t_embed, emb = timed(lambda: backend.embed(image, box, pts), r)
    rows.append((f"embed ({backend.model_id})", t_embed))
    t_search, found = timed(lambda: index.search(emb, settings.top_k), r)
    rows.append((f"search (top-{settings.top_k} of {len(index.gallery)} photos)", t_search))

    vpts = al.apply(pts)
    good = found.good_news
    gcrop = np.asarray(Image.open(index.gallery.crop_path(good.photo)).convert("RGB"))
    gpts = index.gallery.landmarks[good.photo]
    ts = timeline(settings.video_fps, settings.morph_seconds, settings.hold_seconds)
    t_render, frames = timed(lambda: list(morph_frames(crop, vpts, gcrop, gpts, ts)), r)
    rows.append((f"render one morph ({len(ts)} frames)", t_render))
    t_smile, _ = timed(lambda: list(smile_frames(crop, vpts, smile_timeline(
        settings.video_fps, settings.morph_seconds, settings.hold_seconds))), r)
    rows.append(("render smile", t_smile))
    t_encode, _ = timed(lambda: render_clip(frames, work / "clip", "m", settings.video_fps,
                                            settings.webp_size, settings.webp_fps), r)
    rows.append(("encode one clip (MP4 + WebP)", t_encode))

    t_match, _ = timed(lambda: run_job(data, work / "job", index, render=False), r)
    t_job, result = timed(lambda: run_job(data, work / "job", index), r)
    rows.append(("**matches ready** (decode → search)", t_match))
    rows.append(("**whole job** (+ 2 morphs + smile, encoded)", t_job))

    how = " --tiny-onnx" if args.tiny_onnx else (f" --backend {args.backend}" if args.backend else "")
    lines = [f"## Pipeline (`python bench/pipeline.py --fixtures ../shared/fixtures{how}`)", "",
             f"Machine: {machine()}; backend {backend.model_id}; median of {r} warm runs; "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| stage | ms |", "|---|---:|"]
    lines += [f"| {name} | {secs * 1000:.1f} |" for name, secs in rows]
    table = "\n".join(lines)
    print(table)
    if args.write:
        section = ("pipeline" if not args.backend or args.backend == "dlib"
                   else "pipeline-onnx-tiny" if args.tiny_onnx else f"pipeline-{args.backend}")
        write_section(args.write, section, table)


if __name__ == "__main__":
    main()
