"""The ONNX face backend (SCRFD + ArcFace packs) with tiny models of the real packs' shapes.

Maths first (anchors, distances, NMS, letterbox, similarity transform) against hand-computed
numbers; then the backend on tiny exported packs (loading, provider choice, decoding to the
pixel, preprocessing, model tags); then whole flows on fixture photos: analyze_face with
LOOKALIKE_FACE_BACKEND=onnx, re-embedding a dlib gallery, search refusing mixed models, a
re-import redoing everything, ``lookalike eval`` and the CLI command.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("onnx")

from lookalike.errors import ConfigError, GalleryError  # noqa: E402
from lookalike.faces import arcface, scrfd  # noqa: E402
from lookalike.faces.onnx_backend import (  # noqa: E402
    ARCFACE_SAME_PERSON_DISTANCE, CPU, CUDA, OnnxBackend, execution_providers, find_pack)
from lookalike.faces.types import Box, Detection  # noqa: E402

from onnx_models import (  # noqa: E402
    Fire, build_detector, build_pack, build_recogniser, fire_at, rows_per_stride, typical_crop_fire)

# --- maths ----------------------------------------------------------------------------------


def test_anchor_centres_follow_the_network_row_order():
    # 2 x 3 cells of stride 8, two anchors per cell: cells row by row, anchors adjacent
    got = scrfd.anchor_centres(2, 3, 8, 2)
    want = [[0, 0], [0, 0], [8, 0], [8, 0], [16, 0], [16, 0],
            [0, 8], [0, 8], [8, 8], [8, 8], [16, 8], [16, 8]]
    np.testing.assert_array_equal(got, want)
    assert scrfd.anchor_centres(80, 80, 8, 2).shape == (12800, 2)


def test_distance2bbox_and_distance2kps_by_hand():
    points = np.array([[16.0, 24.0], [0.0, 8.0]])
    dist = np.array([[1.0, 2.0, 3.0, 4.0], [8.0, 0.0, 16.0, 8.0]])
    np.testing.assert_allclose(scrfd.distance2bbox(points, dist),
                               [[15, 22, 19, 28], [-8, 8, 16, 16]])
    offsets = np.array([[1, 2, -3, -4, 0, 0, 5, 6, 7, 8]], np.float64)
    np.testing.assert_allclose(scrfd.distance2kps(points[:1], offsets)[0],
                               [[17, 26], [13, 20], [16, 24], [21, 30], [23, 32]])


def test_nms_by_hand():
    boxes = np.array([[0, 0, 9, 9],      # area 10*10 (insightface counts pixels inclusively)
                      [1, 1, 10, 10],    # overlap with 0: 9*9 = 81, union 119, IoU 0.68 -> dropped
                      [5, 0, 14, 9],     # overlap with 0: 5*10 = 50, union 150, IoU 0.333 -> kept
                      [40, 40, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert scrfd.nms(boxes, scores, 0.4) == [0, 2, 3]
    assert scrfd.nms(boxes, scores, 0.3) == [0, 3]  # 0.333 > 0.3: box 2 goes too
    # order follows scores, not input order
    assert scrfd.nms(boxes, np.array([0.1, 0.2, 0.3, 0.4], np.float32), 0.4) == [3, 2, 1]


def test_letterbox_keeps_aspect_top_left():
    wide = np.full((100, 200, 3), 200, np.uint8)
    canvas, scale = scrfd.letterbox(wide, (640, 640))
    assert canvas.shape == (640, 640, 3) and scale == pytest.approx(3.2)
    assert canvas[:320].min() == 200 and canvas[320:].max() == 0  # 640 * 100/200 rows of photo
    tall = np.full((300, 100, 3), 50, np.uint8)
    canvas, scale = scrfd.letterbox(tall, (640, 640))
    assert scale == pytest.approx(640 / 300)
    assert canvas[:, :213].min() == 50 and canvas[:, 213:].max() == 0  # int(640 / 3) columns


def test_detector_blob_is_rgb_and_scaled_by_128():
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    blob = scrfd.to_blob(red)
    assert blob.shape == (1, 3, 4, 4) and blob.dtype == np.float32
    assert blob[0, 0, 0, 0] == pytest.approx(127.5 / 128) and blob[0, 2, 0, 0] == pytest.approx(-127.5 / 128)


def _outputs(fires, *, batch=False, size=640):
    rows = rows_per_stride(size)
    out = {s: [np.zeros((rows[s], 1), np.float32), np.ones((rows[s], 4), np.float32),
               np.zeros((rows[s], 10), np.float32)] for s in (8, 16, 32)}
    for f in fires:
        out[f.stride][0][f.row, 0] = f.score
        out[f.stride][1][f.row] = f.distances
        out[f.stride][2][f.row] = f.kps
    flat = [out[s][k] for k in range(3) for s in (8, 16, 32)]
    return [a[None] for a in flat] if batch else flat


@pytest.mark.parametrize("batch", [False, True])
def test_decode_reads_the_right_rows(batch):
    # stride 16, cell (x=3, y=2) of a 40-wide grid, second anchor: row (2 * 40 + 3) * 2 + 1
    f = Fire(16, (2 * 40 + 3) * 2 + 1, 0.8, (1.0, 2.0, 3.0, 4.0), tuple(range(10)))
    low = Fire(8, 10, 0.49, (1.0, 1.0, 1.0, 1.0))  # below det_thresh 0.5
    raw = scrfd.decode(_outputs([f, low], batch=batch), (640, 640))
    centre = np.array([48.0, 32.0])
    np.testing.assert_allclose(raw.boxes, [[48 - 16, 32 - 32, 48 + 48, 32 + 64]])
    np.testing.assert_allclose(raw.scores, [0.8], rtol=1e-6)
    np.testing.assert_allclose(raw.kps[0], centre + 16 * np.arange(10).reshape(5, 2))


def test_decode_refuses_outputs_of_the_wrong_shape():
    outs = _outputs([])
    outs[3] = outs[3][:, :2]  # boxes of stride 8 with 2 columns
    with pytest.raises(ConfigError, match="boxes of stride 8"):
        scrfd.decode(outs, (640, 640))
    with pytest.raises(ConfigError, match="4 outputs"):
        scrfd.decode(outs[:4], (640, 640))


def _rotation(deg):
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def test_similarity_transform_by_hand():
    # two points: (0,0)->(1,1), (2,0)->(1,3) is a quarter turn, scale 1, shift (1,1)
    m = arcface.similarity_transform([[0, 0], [2, 0]], [[1, 1], [1, 3]])
    np.testing.assert_allclose(m, [[0, -1, 1], [1, 0, 1]], atol=1e-12)
    # the template moved by a known similarity comes back exactly: x' = 0.5 R(90) x + (10, 20)
    src = arcface.ARCFACE_DST.astype(np.float64)
    dst = 0.5 * src @ _rotation(90).T + [10, 20]
    np.testing.assert_allclose(arcface.similarity_transform(src, dst),
                               [[0, -0.5, 10], [0.5, 0, 20]], atol=1e-9)


def test_similarity_transform_is_least_squares_and_never_mirrors():
    rng = np.random.default_rng(3)
    src = arcface.ARCFACE_DST * 3 + [200, 150] + rng.normal(0, 2.0, (5, 2))
    m = arcface.similarity_transform(src, arcface.ARCFACE_DST)
    res = np.linalg.norm(src @ m[:, :2].T + m[:, 2] - arcface.ARCFACE_DST, axis=1)
    # any other similarity (here OpenCV's robust estimate) fits no better in the squared sense
    cv_m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), arcface.ARCFACE_DST, method=cv2.LMEDS)
    cv_res = np.linalg.norm(src @ cv_m[:, :2].T + cv_m[:, 2] - arcface.ARCFACE_DST, axis=1)
    assert (res ** 2).sum() <= (cv_res ** 2).sum() + 1e-9
    assert res.max() < 1.5  # 2 px noise at 3x scale is under 1 px on the template
    mirrored = arcface.ARCFACE_DST * [-1, 1]
    assert np.linalg.det(arcface.similarity_transform(mirrored, arcface.ARCFACE_DST)[:, :2]) > 0


def test_keypoints5_from_68_by_hand():
    lm = np.zeros((68, 2), np.float32)
    lm[36:42] = [[10, 20], [12, 20], [14, 20], [10, 22], [12, 22], [14, 22]]  # mean (12, 21)
    lm[42:48] = [[30, 20]] * 6
    lm[30], lm[48], lm[54] = [21, 30], [14, 40], [28, 41]
    np.testing.assert_allclose(arcface.keypoints5_from_68(lm),
                               [[12, 21], [30, 20], [21, 30], [14, 40], [28, 41]])


def test_norm_crop_puts_the_key_points_on_the_template():
    # draw 5 dots where the template lands after scale 2.5, a 20 degree turn and a shift
    kps = 2.5 * arcface.ARCFACE_DST.astype(np.float64) @ _rotation(20).T + [120, 40]
    img = np.zeros((400, 400, 3), np.uint8)
    for x, y in kps:
        cv2.circle(img, (int(round(x)), int(round(y))), 4, (255, 255, 255), -1, cv2.LINE_AA)
    crop, m = arcface.norm_crop(img, kps)
    assert crop.shape == (112, 112, 3)
    np.testing.assert_allclose(kps @ m[:, :2].T + m[:, 2], arcface.ARCFACE_DST, atol=1e-4)
    grey = crop[..., 0].astype(np.float64)
    for tx, ty in arcface.ARCFACE_DST:  # brightness centroid of each dot is on the template
        x0, y0 = int(tx) - 4, int(ty) - 4
        patch = grey[y0:y0 + 9, x0:x0 + 9]
        ys, xs = np.mgrid[y0:y0 + 9, x0:x0 + 9]
        cx, cy = (patch * xs).sum() / patch.sum(), (patch * ys).sum() / patch.sum()
        assert abs(cx - tx) < 0.6 and abs(cy - ty) < 0.6


# --- tiny packs -----------------------------------------------------------------------------

# canvas fires of the synthetic pack: A wins, B overlaps A and is suppressed, C (second
# anchor of a stride-32 cell) is kept, D is below the detection threshold.
FIRE_A = fire_at((100, 100, 200, 220), [[130, 150], [170, 150], [150, 175], [135, 200], [165, 200]],
                 stride=8, score=0.9)
FIRE_B = fire_at((104, 102, 204, 224), stride=8, score=0.8, anchor=1)
FIRE_C = fire_at((400, 60, 560, 260), [[440, 140], [520, 140], [480, 180], [450, 220], [510, 220]],
                 stride=32, score=0.7, anchor=1)
FIRE_D = fire_at((300, 200, 360, 280), stride=16, score=0.45)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return build_pack(tmp_path_factory.mktemp("buffalo_tiny"), [FIRE_A, FIRE_B, FIRE_C, FIRE_D])


@pytest.fixture(scope="module")
def backend(pack) -> OnnxBackend:
    return OnnxBackend.from_folder(pack, provider="cpu")


def test_tiny_pack_has_the_real_interfaces(pack):
    import onnxruntime as ort

    det = ort.InferenceSession(str(pack / "det_10g.onnx"), providers=[CPU])
    assert [(i.name, i.shape) for i in det.get_inputs()] == [("input.1", [1, 3, 640, 640])]
    assert [o.shape for o in det.get_outputs()] == [
        [12800, 1], [3200, 1], [800, 1], [12800, 4], [3200, 4], [800, 4], [12800, 10], [3200, 10], [800, 10]]
    rec = ort.InferenceSession(str(pack / "w600k_r50.onnx"), providers=[CPU])
    assert [(i.name, i.shape) for i in rec.get_inputs()] == [("input.1", [1, 3, 112, 112])]
    assert [o.shape for o in rec.get_outputs()] == [[1, 512]]


def test_detect_decodes_scales_back_and_suppresses(backend):
    # 960 x 480 photo: canvas scale 640/960, photo occupies the top 320 canvas rows
    rgb = np.zeros((480, 960, 3), np.uint8)
    dets = backend.detect(rgb)
    scale = 640 / 960
    assert len(dets) == 2  # B suppressed by A (IoU ~0.86), D under 0.5
    a, c = dets
    np.testing.assert_allclose([a.box.left, a.box.top, a.box.right, a.box.bottom],
                               np.array([100, 100, 200, 220]) / scale, atol=1e-3)
    assert a.box.score == pytest.approx(0.9, abs=1e-6) and c.box.score == pytest.approx(0.7, abs=1e-6)
    np.testing.assert_allclose(a.keypoints5, np.array([[130, 150], [170, 150], [150, 175],
                                                       [135, 200], [165, 200]]) / scale, atol=1e-3)
    np.testing.assert_allclose([c.box.left, c.box.top, c.box.right, c.box.bottom],
                               np.array([400, 60, 560, 260]) / scale, atol=1e-3)


def test_batch_dimension_and_dynamic_input_are_read_alike(tmp_path, backend):
    path = build_detector(tmp_path / "det.onnx", [FIRE_A, FIRE_C], batch_outputs=True, dynamic=True)
    shutil.copy(backend.recogniser_path, tmp_path / "rec.onnx")
    other = OnnxBackend.from_folder(tmp_path, provider="cpu")
    assert other.input_size == (640, 640)  # symbolic input: insightface's det_size
    rgb = np.zeros((480, 960, 3), np.uint8)
    assert [d.box for d in other.detect(rgb)] == [d.box for d in backend.detect(rgb)]
    assert path.name == other.detector_path.name


def test_pack_files_are_told_apart_by_shape_not_name(tmp_path, pack):
    shutil.copy(pack / "det_10g.onnx", tmp_path / "zz_recognition.onnx")
    shutil.copy(pack / "w600k_r50.onnx", tmp_path / "aa_detection.onnx")
    shutil.copy(pack / "2d106det.onnx", tmp_path / "mm.onnx")
    found = find_pack(tmp_path)
    assert found.detector.name == "zz_recognition.onnx"
    assert found.recogniser.name == "aa_detection.onnx"


def test_pack_problems_are_config_errors_naming_the_folder(tmp_path, pack):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope'}.*does not exist"):
        find_pack(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no .onnx files"):
        find_pack(tmp_path)
    shutil.copy(pack / "det_10g.onnx", tmp_path / "det_10g.onnx")
    shutil.copy(pack / "2d106det.onnx", tmp_path / "2d106det.onnx")
    with pytest.raises(ConfigError, match=r"has no face recogniser .*among 2d106det.onnx, det_10g.onnx"):
        find_pack(tmp_path)
    shutil.copy(pack / "det_10g.onnx", tmp_path / "det_2.onnx")
    shutil.copy(pack / "w600k_r50.onnx", tmp_path / "w600k_r50.onnx")
    with pytest.raises(ConfigError, match="several detectors"):
        find_pack(tmp_path)
    (tmp_path / "det_2.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load the ONNX model .*det_2.onnx"):
        find_pack(tmp_path)


def test_onnx_backend_without_model_dir_setting_names_it():
    from lookalike.config import Settings

    with pytest.raises(ConfigError, match="LOOKALIKE_ONNX_MODEL_DIR"):
        OnnxBackend.from_settings(Settings(face_backend="onnx", onnx_model_dir=None))


def test_provider_choice(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    assert execution_providers("auto") == [CUDA, CPU]
    assert execution_providers("cuda") == [CUDA, CPU]
    assert execution_providers("cpu") == [CPU]
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    assert execution_providers("auto") == [CPU]
    with pytest.raises(ConfigError, match="LOOKALIKE_ONNX_PROVIDER=cuda.*onnxruntime-gpu"):
        execution_providers("cuda")


def test_cuda_that_does_not_start_is_an_error_not_a_cpu_fallback(monkeypatch, pack, caplog):
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        pytest.skip("this machine really has CUDA")
    # onnxruntime lists CUDA but cannot run it (what a CPU wheel does with a CUDA request,
    # and onnxruntime-gpu does when a CUDA library is missing): sessions end up on the CPU
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    with pytest.raises(ConfigError, match="could not start CUDA"):
        OnnxBackend.from_folder(pack, provider="cuda")
    with caplog.at_level(logging.WARNING, logger="lookalike.faces.onnx"):
        auto = OnnxBackend.from_folder(pack, provider="auto")
    assert auto.provider == CPU and "could not start" in caplog.text


def test_provider_and_model_are_logged_at_start(pack, caplog):
    with caplog.at_level(logging.INFO, logger="lookalike.faces.onnx"):
        b = OnnxBackend.from_folder(pack, provider="cpu")
    assert f"ONNX face backend on {CPU}" in caplog.text and b.model_id in caplog.text
    assert b.describe()["provider"] == CPU


def test_model_id_tags_the_recogniser_file(tmp_path, backend, pack):
    sha = hashlib.sha1((pack / "w600k_r50.onnx").read_bytes()).hexdigest()
    assert backend.model_id == f"onnx:w600k_r50.onnx:{sha[:10]}"
    assert backend.embedding_dim == 512
    assert backend.same_person_distance == pytest.approx(math.sqrt(2 - 2 * 0.30))
    assert ARCFACE_SAME_PERSON_DISTANCE == pytest.approx(1.1832, abs=1e-4)
    # another pack whose recogniser has the same file name is another embedding space
    shutil.copy(pack / "det_10g.onnx", tmp_path / "det_10g.onnx")
    build_recogniser(tmp_path / "w600k_r50.onnx", seed=7)
    other = OnnxBackend.from_folder(tmp_path, provider="cpu")
    assert other.model_id.startswith("onnx:w600k_r50.onnx:") and other.model_id != backend.model_id


def test_embedding_is_unit_512_and_uses_detection_key_points(backend):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (480, 960, 3), dtype=np.uint8)
    det = backend.detect(rgb)[0]
    e = backend.embed(rgb, det, np.zeros((68, 2), np.float32))
    assert e.shape == (512,) and e.dtype == np.float32
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    crop, _ = arcface.norm_crop(rgb, det.keypoints5)
    np.testing.assert_allclose(e, backend.embed_aligned(crop), atol=1e-6)
    # without key points the 5 points come from the 68 landmarks
    lm = np.zeros((68, 2), np.float32)
    lm[36:42], lm[42:48] = det.keypoints5[0], det.keypoints5[1]
    lm[30], lm[48], lm[54] = det.keypoints5[2], det.keypoints5[3], det.keypoints5[4]
    np.testing.assert_allclose(backend.embed(rgb, Detection(det.box, None), lm), e, atol=1e-5)


def test_recogniser_sees_rgb_scaled_by_127_5(tmp_path, pack):
    shutil.copy(pack / "det_10g.onnx", tmp_path / "det_10g.onnx")
    build_recogniser(tmp_path / "probe.onnx", probe=True)
    b = OnnxBackend.from_folder(tmp_path, provider="cpu")
    assert (b.input_mean, b.input_std) == (127.5, 127.5)
    img = np.zeros((200, 200, 3), np.uint8)
    img[..., 0], img[..., 2] = 255, 64  # red 255, green 0, blue 64
    e = b.embed(img, Detection(Box(0, 0, 112, 112, 1.0), arcface.ARCFACE_DST.copy()), None)
    np.testing.assert_allclose(e[:3] / e[3], [1.0, -1.0, (64 - 127.5) / 127.5], atol=1e-5)


def test_mxnet_style_recogniser_gets_raw_pixels(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Sub", ["input.1", "c"], ["a"], name="_minusscalar0"),
             helper.make_node("Mul", ["a", "s"], ["b"], name="_mulscalar0"),
             helper.make_node("Flatten", ["b"], ["fc1"], name="flatten0")]
    graph = helper.make_graph(
        nodes, "mx", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3 * 112 * 112])],
        initializer=[helper.make_tensor("c", TensorProto.FLOAT, [], [127.5]),
                     helper.make_tensor("s", TensorProto.FLOAT, [], [0.0078125])])
    path = tmp_path / "mx.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert arcface.first_node_names(path, 8) == ["_minusscalar0", "_mulscalar0", "flatten0"]
    assert arcface.input_normalisation(path) == (0.0, 1.0)


def test_first_node_names_match_onnx_package(pack):
    import onnx

    model = onnx.load(str(pack / "w600k_r50.onnx"))
    assert arcface.first_node_names(pack / "w600k_r50.onnx", 8) == [n.name for n in model.graph.node[:8]]


# --- whole flows on fixture photos ----------------------------------------------------------

E2E_PHOTO = "faces/Unnamed_A/2.jpg"  # 1000 x 1780: analyze_face reduces it before detection
GALLERY_PHOTOS = {"Colin_Powell": ["1.jpg", "2.jpg"], "Halle_Berry": ["1.jpg", "2.jpg"],
                  "Tom_Hanks": ["2.jpg", "3.jpg"]}


@pytest.fixture
def settings_env(monkeypatch):
    """Set LOOKALIKE_* variables for one test; settings and backend caches restored after."""
    from lookalike.config import get_settings
    from lookalike.faces import backend as backend_mod

    saved = dict(backend_mod._backends)

    def set_env(**env):
        for key, value in env.items():
            monkeypatch.setenv(f"LOOKALIKE_{key.upper()}", str(value))
        get_settings.cache_clear()
        backend_mod._backends.pop("onnx", None)

    monkeypatch.delenv("LOOKALIKE_FACE_BACKEND", raising=False)
    get_settings.cache_clear()
    yield set_env
    backend_mod._backends.clear()
    backend_mod._backends.update(saved)
    get_settings.cache_clear()


def _rgb(path: Path) -> np.ndarray:
    from lookalike.imaging import decode_image

    return decode_image(path.read_bytes()).rgb


def test_analyze_face_with_onnx_setting_on_a_photo(tmp_path, fixtures_dir, settings_env, pack):
    from lookalike.faces import detect_faces, get_backend, landmarks68
    from lookalike.stages import encode_image

    photo = fixtures_dir / E2E_PHOTO
    rgb = _rgb(photo)
    h, w = rgb.shape[:2]
    dlib_box = detect_faces(rgb, backend=get_backend("dlib"))[0].box
    kps = arcface.keypoints5_from_68(landmarks68(rgb, dlib_box))
    # make the tiny detector fire on that face: photo -> reduced copy (long side 1024) -> canvas
    reduce = 1024 / max(h, w)
    small_h, small_w = round(h * reduce), round(w * reduce)
    _, det_scale = scrfd.letterbox(np.zeros((small_h, small_w, 3), np.uint8), (640, 640))
    to_canvas = reduce * det_scale
    box = np.array([dlib_box.left, dlib_box.top, dlib_box.right, dlib_box.bottom]) * to_canvas
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    build_detector(pack_dir / "det_10g.onnx", [fire_at(box, kps * to_canvas, score=0.93)])
    shutil.copy(pack / "w600k_r50.onnx", pack_dir / "w600k_r50.onnx")

    settings_env(face_backend="onnx", onnx_model_dir=pack_dir, onnx_provider="cpu")
    onnx_backend = get_backend()
    assert isinstance(onnx_backend, OnnxBackend)
    face = encode_image(photo.read_bytes())
    assert face.model == onnx_backend.model_id and face.model.startswith("onnx:w600k_r50.onnx:")
    assert face.embedding.shape == (512,) and face.embedding.dtype == np.float32
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose([face.box.left, face.box.top, face.box.right, face.box.bottom],
                               [dlib_box.left, dlib_box.top, dlib_box.right, dlib_box.bottom], atol=0.05)
    assert face.box.score == pytest.approx(0.93, abs=1e-6)
    assert len(face.landmarks) == 68 and face.aligned.shape == (512, 512, 3)
    # aligned on the detector's 5 points, which came back to photo pixels
    expected = onnx_backend.embed(rgb, Detection(face.box, kps.astype(np.float32)), face.landmarks)
    assert float(expected @ face.embedding) > 0.9999


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, fixtures_dir) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for person, files in GALLERY_PHOTOS.items():
        (root / person).mkdir()
        for name in files:  # links: fixture photos are read in place, never copied
            os.symlink(fixtures_dir / "faces" / person / name, root / person / name)
    return root


@pytest.fixture(scope="module")
def dlib_gallery(tmp_path_factory, photo_folder) -> Path:
    from lookalike.config import get_settings
    from lookalike.gallery.importer import import_folder

    saved = os.environ.pop("LOOKALIKE_FACE_BACKEND", None)
    get_settings.cache_clear()
    try:
        gdir = tmp_path_factory.mktemp("gallery") / "g"
        report = import_folder(photo_folder, gdir, workers=1)
        assert report.added == 6 and not report.failed
    finally:
        if saved is not None:
            os.environ["LOOKALIKE_FACE_BACKEND"] = saved
        get_settings.cache_clear()
    return gdir


@pytest.fixture(scope="module")
def crop_pack(tmp_path_factory, dlib_gallery, pack) -> Path:
    """A tiny pack whose detector fires where FFHQ crops have their face."""
    from lookalike.gallery.store import Gallery

    g = Gallery.load(dlib_gallery)
    folder = tmp_path_factory.mktemp("crop_pack")
    size = 512
    build_detector(folder / "det_10g.onnx", [typical_crop_fire(g.landmarks[0], size)])
    shutil.copy(pack / "w600k_r50.onnx", folder / "w600k_r50.onnx")
    return folder


def test_reembed_gallery_then_search_and_reimport(tmp_path, dlib_gallery, crop_pack, photo_folder,
                                                  settings_env):
    from lookalike.gallery.importer import import_folder
    from lookalike.gallery.index import GalleryIndex
    from lookalike.gallery.reembed import reembed_gallery
    from lookalike.gallery.store import Gallery

    gdir = tmp_path / "g"
    shutil.copytree(dlib_gallery, gdir)
    before = Gallery.load(gdir)
    assert before.model == "dlib-resnet-v1" and before.embeddings.shape == (6, 128)
    dlib_query = before.embeddings[0].copy()

    backend = OnnxBackend.from_folder(crop_pack, provider="cpu")
    seen = []

    def progress(items, total):
        seen.append(total)
        for item in items:
            seen.append(item)
            yield item

    report = reembed_gallery(gdir, backend, progress=progress)
    assert seen == [6, 0, 1, 2, 3, 4, 5]
    assert (report.old_model, report.new_model, report.photos) == ("dlib-resnet-v1", backend.model_id, 6)
    assert report.detected >= 1 and report.detected + report.from_landmarks == 6 and not report.failed

    after = Gallery.load(gdir)
    assert after.model == backend.model_id and after.generation == before.generation + 1
    assert after.embeddings.shape == (6, 512)
    np.testing.assert_allclose(np.linalg.norm(after.embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(after.landmarks, before.landmarks)
    assert [p.crop for p in after.photos] == [p.crop for p in before.photos]

    # search works in the new space and refuses the old one
    index = GalleryIndex(after, backend.same_person_distance)
    result = index.search(after.embeddings[3], k=3, model=backend.model_id)
    assert result.matches[0].person_id == after.photos[3].person_id
    assert result.matches[0].similarity == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(GalleryError, match="reembed"):
        index.search(dlib_query, model="dlib-resnet-v1")
    with pytest.raises(GalleryError, match="size"):
        index.search(dlib_query)

    # already in that space: nothing to do unless forced; forced gives the same vectors
    assert reembed_gallery(gdir, backend).skipped
    again = reembed_gallery(gdir, backend, force=True)
    assert not again.skipped
    np.testing.assert_allclose(Gallery.load(gdir).embeddings, after.embeddings, atol=1e-6)

    # importing with the dlib backend into the onnx gallery redoes every photo -- only when this
    # import's folder holds them all: a partial folder would drop the others, so it is refused
    settings_env()  # default settings: dlib
    partial = tmp_path / "partial"
    first = sorted(p for p in photo_folder.iterdir() if p.is_dir())[0]
    shutil.copytree(first, partial / first.name, symlinks=True)
    with pytest.raises(GalleryError, match="holds only some of its photos") as refused:
        import_folder(partial, gdir, workers=1)
    assert "lookalike gallery reembed" in refused.value.advice
    assert Gallery.load(gdir).model == backend.model_id and len(Gallery.load(gdir)) == 6  # untouched
    back = import_folder(photo_folder, gdir, workers=1)
    assert (back.removed, back.added, back.unchanged) == (6, 6, 0)
    redone = Gallery.load(gdir)
    assert redone.model == "dlib-resnet-v1" and redone.embeddings.shape == (6, 128)


def test_reembed_drops_photos_whose_crop_is_broken(tmp_path, dlib_gallery, crop_pack):
    from lookalike.gallery.reembed import reembed_gallery
    from lookalike.gallery.store import Gallery

    gdir = tmp_path / "g"
    shutil.copytree(dlib_gallery, gdir)
    g = Gallery.load(gdir)
    broken = g.photos[2]
    g.crop_path(2).write_bytes(b"\xff\xd8 not a jpeg")
    backend = OnnxBackend.from_folder(crop_pack, provider="cpu")
    report = reembed_gallery(gdir, backend, detect=False)
    assert report.photos == 5 and report.from_landmarks == 5 and report.detected == 0
    assert [f["source"] for f in report.failed] == [broken.source]
    after = Gallery.load(gdir)
    assert len(after) == 5 and after.embeddings.shape == (5, 512)
    assert broken.source not in {p.source for p in after.photos}
    assert broken.person_id in after.people  # a re-import brings the photo back
    assert after.failed[-1]["code"] == "crop_unreadable"


def test_cli_gallery_reembed(tmp_path, dlib_gallery, crop_pack, settings_env):
    from typer.testing import CliRunner

    from lookalike.cli import app
    from lookalike.gallery.store import Gallery

    gdir = tmp_path / "g"
    shutil.copytree(dlib_gallery, gdir)
    settings_env(face_backend="onnx", onnx_model_dir=crop_pack, onnx_provider="cpu")
    result = CliRunner().invoke(app, ["gallery", "reembed", "--gallery", str(gdir)])
    assert result.exit_code == 0, result.output
    model = Gallery.load(gdir).model
    assert model.startswith("onnx:w600k_r50.onnx:")
    assert f"6 photos re-embedded with {model} on {CPU}" in result.output
    again = CliRunner().invoke(app, ["gallery", "reembed", "--gallery", str(gdir)])
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_cli_gallery_reembed_reports_a_bad_model_folder(tmp_path, dlib_gallery, settings_env):
    from typer.testing import CliRunner

    from lookalike.cli import app

    settings_env(face_backend="onnx", onnx_model_dir=tmp_path / "missing")
    result = CliRunner().invoke(app, ["gallery", "reembed", "--gallery", str(dlib_gallery)])
    assert result.exit_code == ConfigError.exit_code
    assert "missing" in result.output and "LOOKALIKE_ONNX_MODEL_DIR" in result.output


def test_eval_works_with_the_onnx_backend(photo_folder, crop_pack, settings_env):
    from lookalike.evaluate import evaluate_folder

    settings_env(face_backend="onnx", onnx_model_dir=crop_pack, onnx_provider="cpu")
    report = evaluate_folder(photo_folder, workers=1).to_dict()
    assert report["model"].startswith("onnx:w600k_r50.onnx:")
    assert report["people"] == 3 and report["probes"] == 3
    assert report["same_person_similarity"]["pairs"] == 3



@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_pack_stops_serve_and_the_encoder_worker_at_start(tmp_path, command):
    """Not a worker that says it is ready and then fails every job: exit 4 naming the setting."""
    import subprocess
    import sys

    empty = tmp_path / "pack"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update(LOOKALIKE_DATA_DIR=str(tmp_path), LOOKALIKE_FACE_BACKEND="onnx",
               LOOKALIKE_ONNX_MODEL_DIR=str(empty))
    args = ["serve", "--port", "1"]  # never reached: the pack is checked first
    if command == "worker":
        # well-formed distributed settings; nothing is contacted before the check
        env.update(LOOKALIKE_REDIS_URL="redis://127.0.0.1:1/0", LOOKALIKE_STORAGE="s3",
                   LOOKALIKE_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none",
                   LOOKALIKE_S3_ENDPOINT_URL="http://127.0.0.1:1",
                   LOOKALIKE_SECRET_KEY="0123456789abcdef0123456789abcdef")
        args = ["worker", "--queue", "encoder"]
    done = subprocess.run([sys.executable, "-m", "lookalike.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert "LOOKALIKE_ONNX_MODEL_DIR" in done.stderr and "Traceback" not in done.stderr
