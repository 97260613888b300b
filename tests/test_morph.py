"""Classical morph and smile (lookalike.morph) on synthetic faces with known landmarks."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from lookalike import morph as M

S = 256  # small crops keep the suite fast; the machinery is size-independent


# --- synthetic inputs -------------------------------------------------------------------------

def face_points(size: int = S, *, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0,
                angle_deg: float = 0.0) -> np.ndarray:
    """The reference mean shape, optionally moved, scaled and rotated about the crop centre."""
    pts = M.reference_shape(size).astype(np.float64)
    c = np.array([size / 2, size / 2])
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return ((pts - c) @ rot.T * scale + c + (dx, dy)).astype(np.float32)


def other_face(size: int = S) -> np.ndarray:
    """A visibly different face: wider jaw, bigger mouth, higher brows, shifted a little."""
    pts = face_points(size, dx=4, dy=-3, scale=1.05).astype(np.float64)
    c = pts[27:36].mean(axis=0)
    pts[0:17, 0] = c[0] + (pts[0:17, 0] - c[0]) * 1.12
    pts[17:27, 1] -= size * 0.02
    m = pts[48:68].mean(axis=0)
    pts[48:68] = m + (pts[48:68] - m) * 1.25
    return pts.astype(np.float32)


def textured(size: int = S, seed: int = 0) -> np.ndarray:
    """Smooth random texture: every pixel distinct enough to reveal misplaced warps."""
    rng = np.random.default_rng(seed)
    noise = rng.random((size // 8, size // 8, 3)).astype(np.float32)
    img = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def face_image(pts: np.ndarray, size: int = S, seed: int = 0) -> np.ndarray:
    """Face-like drawing at the landmarks, on a texture: skin oval, eyes, brows, nose, lips."""
    img = textured(size, seed)
    p = np.round(pts).astype(np.int32)
    cv2.fillPoly(img, [cv2.convexHull(np.vstack([p[0:17], p[17:27]]))], (205, 160, 130))
    for eye in (p[36:42], p[42:48]):
        cv2.fillPoly(img, [eye], (250, 250, 250))
        c = eye.mean(axis=0).astype(int)
        cv2.circle(img, tuple(int(v) for v in c), max(2, size // 80), (40, 30, 20), -1)
    cv2.polylines(img, [p[17:22], p[22:27]], False, (60, 40, 30), max(1, size // 128))
    cv2.polylines(img, [p[27:31], p[31:36]], False, (150, 100, 80), 1)
    cv2.fillPoly(img, [p[48:60]], (180, 60, 70))
    cv2.polylines(img, [p[60:68]], True, (90, 20, 30), 1)
    return img


def dot_image(point: np.ndarray, size: int = S, sigma: float = 1.2) -> np.ndarray:
    """Black image with one small Gaussian dot (all channels) centred on ``point``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    g = np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * sigma ** 2))
    img = np.round(g * 255).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2)


def dot_centre(img: np.ndarray, near: np.ndarray, radius: int = 8) -> np.ndarray:
    """Intensity-weighted centroid of the dot in a window around ``near``."""
    x0, y0 = (int(round(v)) - radius for v in near)
    win = img[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1, 0].astype(np.float64)
    assert win.sum() > 100, "dot vanished"
    yy, xx = np.mgrid[0:win.shape[0], 0:win.shape[1]]
    return np.array([(xx * win).sum() / win.sum() + x0, (yy * win).sum() / win.sum() + y0])


# --- geometry -------------------------------------------------------------------------------------

def test_morph_points_appends_the_same_border_around_the_frame():
    a, b = face_points(), other_face()
    ea, eb = M.morph_points(a, b, S)
    n_border = 4 + 4 * M.BORDER_POINTS_PER_EDGE
    assert ea.shape == eb.shape == (68 + n_border, 2)
    np.testing.assert_allclose(ea[:68], a, atol=1e-4)
    np.testing.assert_allclose(eb[:68], b, atol=1e-4)
    np.testing.assert_array_equal(ea[68:], eb[68:])  # border points never move
    assert ea[68:].min() < -0.5 and ea[68:].max() > S - 0.5  # box encloses every pixel
    # corners and edge midpoints are among them
    lo, hi = ea[68:].min(), ea[68:].max()
    for corner in [(lo, lo), (lo, hi), (hi, lo), (hi, hi), ((lo + hi) / 2, lo)]:
        assert np.isclose(np.linalg.norm(ea[68:] - corner, axis=1).min(), 0)


def test_border_grows_to_enclose_landmarks_outside_the_crop():
    a = face_points(dx=-S * 0.3)  # jaw pokes out on the left
    assert a[:, 0].min() < 0
    ea, _ = M.morph_points(a, a, S)
    assert ea[68:, 0].min() < a[:, 0].min()


def test_mesh_tiles_the_whole_box_without_overlap():
    ea, eb = M.morph_points(face_points(), other_face(), S)
    mid = (ea + eb) / 2
    mesh = M.triangulate(mid)
    tri = mid[mesh.triangles]
    area = 0.5 * np.abs((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
                        - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
    box = np.ptp(mid[68:, 0]) * np.ptp(mid[68:, 1])
    assert area.sum() == pytest.approx(box, rel=1e-9)
    assert mesh.neighbours.shape == mesh.triangles.shape


def test_bad_inputs_are_refused():
    a = face_points()
    with pytest.raises(ValueError):
        M.morph_points(a, a[:60], S)
    with pytest.raises(ValueError):
        M.morph_points(a, np.full_like(a, np.nan), S)
    img = face_image(a)
    with pytest.raises(ValueError):
        next(M.morph_frames(img, a, img[:128], a, [0.5]))
    with pytest.raises(ValueError):
        next(M.morph_frames(img.astype(np.float32), a, img, a, [0.5]))


# --- timing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps,seconds,hold", [(25, 2.0, 0.3), (25, 2.0, 0.0), (12, 1.5, 0.25),
                                              (30, 3.0, 0.5), (10, 0.3, 1.0)])
def test_timeline_length_holds_and_easing(fps, seconds, hold):
    ts = M.timeline(fps, seconds, hold)
    n = round(fps * seconds)
    assert len(ts) == max(n, 2)
    assert ts[0] == 0.0 and ts[-1] == 1.0
    assert all(b >= a for a, b in zip(ts, ts[1:]))  # monotonic
    h = min(round(fps * hold), (len(ts) - 2) // 2)
    assert ts[:h + 1] == [0.0] * (h + 1) and ts[-(h + 1):] == [1.0] * (h + 1)
    assert ts[h + 1] > 0.0 and ts[-(h + 2)] < 1.0  # the ramp moves right after the hold
    for i in range(len(ts)):  # cosine ease is symmetric about the middle
        assert ts[i] + ts[-1 - i] == pytest.approx(1.0, abs=1e-12)


def test_timeline_eases_in_and_out():
    ts = M.timeline(25, 2.0, 0.3)
    ramp = [t for t in ts if 0.0 < t < 1.0]
    steps = np.diff([0.0] + ramp + [1.0])
    mid = len(steps) // 2
    assert steps[0] < steps[mid] / 4 and steps[-1] < steps[mid] / 4  # slow at both ends
    assert M.ease(0.5) == pytest.approx(0.5) and M.ease(0) == 0 and M.ease(1) == 1
    assert M.timeline(25, 2.0, 0.3).count(0.0) == 8 + 1  # round(7.5) hold frames + ramp start


def test_timeline_refuses_nonsense():
    with pytest.raises(ValueError):
        M.timeline(0, 2.0)
    with pytest.raises(ValueError):
        M.timeline(25, 2.0, -1)


# --- warp and morph ---------------------------------------------------------------------------

@pytest.mark.parametrize("step", [1, 2])
@pytest.mark.parametrize("index", [30, 36, 48, 54, 57, 8])
def test_warp_moves_a_dot_at_a_landmark_onto_the_target(index, step):
    src, dst = face_points(), other_face()
    img = dot_image(src[index])
    out = M.warp_image(img, src, dst, step=step)
    found = dot_centre(out, dst[index])
    assert np.linalg.norm(found - dst[index]) < 1.0, (found, dst[index])


def test_morph_halfway_brings_both_dots_to_the_mean_landmark():
    a, b = face_points(), other_face()
    k = 54
    frame = M.morph_frame(dot_image(a[k]), a, dot_image(b[k]), b, 0.5)
    mid = (a[k] + b[k]) / 2
    assert np.linalg.norm(dot_centre(frame, mid) - mid) < 1.0
    # both halves landed on the same spot: the blend keeps the dot at ~full brightness/2 * 2
    assert frame[int(round(mid[1])), int(round(mid[0]))].max() > 150


def test_morph_ends_are_the_inputs():
    a, b = face_points(), other_face()
    img_a, img_b = face_image(a, seed=1), face_image(b, seed=2)
    f0, f1 = M.morph_frames(img_a, a, img_b, b, [0.0, 1.0])
    np.testing.assert_array_equal(f0, img_a)
    np.testing.assert_array_equal(f1, img_b)


@pytest.mark.parametrize("step", [1, 2])
def test_warp_machinery_is_identity_at_the_ends(step):
    """Just inside (0, 1) the full warp runs (no shortcut) and must reproduce the inputs."""
    a, b = face_points(), other_face()
    img_a, img_b = face_image(a, seed=1), face_image(b, seed=2)
    eps = 1e-6
    f0 = M.morph_frame(img_a, a, img_b, b, eps, step=step).astype(int)
    f1 = M.morph_frame(img_a, a, img_b, b, 1 - eps, step=step).astype(int)
    inner = np.s_[4:-4, 4:-4]
    assert np.abs(f0[inner] - img_a[inner]).max() <= 2
    assert np.abs(f1[inner] - img_b[inner]).max() <= 2
    assert np.abs(f0 - img_a).mean() < 0.05 and np.abs(f1 - img_b).mean() < 0.05


def test_no_cracks_between_triangles():
    """Uniform inputs must give a uniform output: any pixel no triangle covered would show."""
    a, b = face_points(), other_face()
    img_a = np.full((S, S, 3), (200, 120, 40), np.uint8)
    img_b = np.full((S, S, 3), (20, 220, 160), np.uint8)
    for t in (0.13, 0.5, 0.87):
        frame = M.morph_frame(img_a, a, img_b, b, t)
        want = np.round((1 - t) * img_a[0, 0] + t * img_b[0, 0])
        assert np.abs(frame.reshape(-1, 3) - want).max() <= 1, t
    warped = M.warp_image(img_a, a, M.smile_points(a, 2.0))
    assert (warped == img_a).all()


def test_coarse_map_matches_the_exact_one():
    ea, eb = M.morph_points(face_points(), other_face(), S)
    mesh = M.triangulate((ea + eb) / 2)
    mid = 0.4 * ea + 0.6 * eb
    (exact,) = M.warp_maps(mid, [ea], mesh, (S, S), step=1)
    (coarse,) = M.warp_maps(mid, [ea], mesh, (S, S), step=2)
    err = np.linalg.norm(exact - coarse, axis=2)
    assert err.max() < 0.75 and np.percentile(err, 99) < 0.2
    # and the exact map is the piecewise-affine one: landmarks map onto landmarks
    for k in (0, 8, 30, 36, 48, 62):
        x, y = mid[k]
        xi, yi = int(round(x)), int(round(y))
        if abs(x - xi) < 1e-3 and abs(y - yi) < 1e-3:
            np.testing.assert_allclose(exact[yi, xi], ea[k], atol=0.05)


def _brute_force_map(dst: np.ndarray, src: np.ndarray, tris: np.ndarray, size: int) -> np.ndarray:
    """Reference piecewise-affine map: barycentric coordinates of every pixel centre in every
    triangle, no rasterising.  NaN where no triangle contains the pixel."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.full((size, size, 2), np.nan)
    for t in tris:
        (x0, y0), (x1, y1), (x2, y2) = dst[t]
        den = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        if abs(den) < 1e-9:
            continue
        l0 = ((y1 - y2) * (xx - x2) + (x2 - x1) * (yy - y2)) / den
        l1 = ((y2 - y0) * (xx - x2) + (x0 - x2) * (yy - y2)) / den
        l2 = 1 - l0 - l1
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
        lam = np.stack([l0, l1, l2], axis=-1)[inside]
        out[inside] = lam @ src[t]
    return out


def test_dense_map_is_the_exact_piecewise_affine_map():
    """Strongly jittered landmarks make neighbouring triangles stretch very differently, where
    assigning an edge pixel to the wrong triangle would show up as a >1 px error."""
    size = 128
    rng = np.random.default_rng(7)
    a = face_points(size)
    b = a + rng.normal(0, 2.5, a.shape).astype(np.float32)
    ea, eb = M.morph_points(a, b, size)
    mesh = M.triangulate((ea + eb) / 2)
    def signed_areas(p: np.ndarray) -> np.ndarray:
        tri = p[mesh.triangles]
        return ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
                - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))

    for t in (0.2, 0.3, 0.5):
        mid = (1 - t) * ea + t * eb
        # no triangle folds over at these t, so the map is unambiguous
        assert (np.sign(signed_areas(mid)) == np.sign(signed_areas((ea + eb) / 2))).all()
        (m,) = M.warp_maps(mid, [eb], mesh, (size, size), step=1)
        ref = _brute_force_map(mid, eb, mesh.triangles, size)
        assert not np.isnan(ref).any()
        err = np.linalg.norm(m - ref, axis=2)
        assert err.max() < 0.1, err.max()


def test_odd_and_non_square_frames():
    pts = face_points(200)
    img = face_image(pts, 200)[:, :181]
    out = M.warp_image(img, pts, M.smile_points(pts))
    assert out.shape == img.shape and out.dtype == np.uint8
    frames = list(M.morph_frames(img, pts, img[::-1].copy(), pts, [0.3]))
    assert frames[0].shape == img.shape


def test_holds_are_rendered_once_and_shared():
    a, b = face_points(), other_face()
    img_a, img_b = face_image(a, seed=1), face_image(b, seed=2)
    ts = M.timeline(25, 2.0, 0.3)
    frames = list(M.morph_frames(img_a, a, img_b, b, ts))
    assert len(frames) == len(ts) == 50
    assert all(f is frames[0] for f in frames[:9])
    assert all(f is frames[-1] for f in frames[-9:])
    assert len({id(f) for f in frames}) == len(set(ts))
    assert not frames[20].flags.writeable
    assert all(f.shape == (S, S, 3) and f.dtype == np.uint8 for f in frames)
    # the ramp really moves: consecutive distinct frames differ, and not all at once
    diffs = [np.abs(x.astype(int) - y).mean() for x, y in zip(frames[8:41], frames[9:42])]
    assert min(diffs) > 0 and max(diffs) < 10


def test_poster_is_the_halfway_blend():
    """With equal shapes no pixel moves, so halfway must be the plain 50/50 average."""
    a = face_points()
    img_a, img_b = face_image(a, seed=3), textured(S, seed=4)
    poster = M.halfway_frame(img_a, a, img_b, a)
    avg = (img_a.astype(int) + img_b) / 2
    assert np.abs(poster - avg).max() <= 1
    b = other_face()
    np.testing.assert_array_equal(M.halfway_frame(img_a, a, img_b, b),
                                  M.morph_frame(img_a, a, img_b, b, 0.5))


# --- smile --------------------------------------------------------------------------------------

def test_smile_lifts_and_widens_the_mouth_corners():
    pts = face_points(512)
    sm = M.smile_points(pts, 1.0)
    d, _, _ = M.face_axes(pts)
    assert sm.shape == (68, 2) and sm.dtype == np.float32
    # corners up (y decreases) and outward
    assert sm[48, 1] < pts[48, 1] - 0.08 * d and sm[54, 1] < pts[54, 1] - 0.08 * d
    assert sm[48, 0] < pts[48, 0] - 0.05 * d and sm[54, 0] > pts[54, 0] + 0.05 * d
    # the centres of the lips hardly move, so the lip line curves upward at the ends
    assert np.linalg.norm(sm[51] - pts[51]) < 0.01 * d
    assert np.linalg.norm(sm[57] - pts[57]) < 0.01 * d
    assert (pts[57, 1] - sm[48, 1]) > (pts[57, 1] - pts[48, 1]) + 0.08 * d
    # eyes, brows, nose and chin stay exactly where they were
    keep = list(range(17, 48)) + [0, 1, 2, 6, 7, 8, 9, 10, 14, 15, 16]
    np.testing.assert_array_equal(sm[keep], pts[keep])
    # the cheeks lift a little, less than the corners
    assert 0 < pts[4, 1] - sm[4, 1] < pts[48, 1] - sm[48, 1]


def test_smile_keeps_a_closed_mouth_closed_and_is_symmetric():
    pts = face_points(512).astype(np.float64)
    # close the mouth the way dlib reports it: lower inner lip on the upper, a little offset
    pts[65:68] = pts[[63, 62, 61]] + (4.0, 0.5)
    pts = pts.astype(np.float32)
    sm = M.smile_points(pts)
    for up, low in M.INNER_LIP_PAIRS:  # the lips move together: no gap opens
        np.testing.assert_allclose(sm[up] - sm[low], pts[up] - pts[low], atol=1e-3)
    # the reference shape is left-right symmetric, so is its smile
    mirror = 512 - sm[54, 0]
    assert sm[48, 0] == pytest.approx(mirror, abs=0.05)
    assert sm[48, 1] == pytest.approx(sm[54, 1], abs=0.05)


def test_smile_scales_with_strength_and_face_and_follows_roll():
    pts = face_points(512)
    d1 = M.smile_points(pts, 1.0) - pts
    np.testing.assert_allclose(M.smile_points(pts, 0.0), pts, atol=1e-4)
    np.testing.assert_allclose(M.smile_points(pts, 0.5) - pts, d1 * 0.5, atol=1e-3)
    small = face_points(256)
    np.testing.assert_allclose(M.smile_points(small) - small, d1 / 2, atol=1e-2)
    rolled = face_points(512, angle_deg=15)
    dr = M.smile_points(rolled) - rolled
    a = math.radians(15)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    np.testing.assert_allclose(dr, d1 @ rot.T, atol=1e-2)
    with pytest.raises(ValueError):
        M.smile_points(pts[:60])


def test_smile_frames_move_the_corner_and_leave_the_eyes():
    pts = face_points()
    img = face_image(pts, seed=5)
    k = 54
    img_dot = img.copy()
    img_dot[dot_image(pts[k]) > 0] = 0  # clear a patch, then put a bright dot at the corner
    img_dot = np.maximum(img_dot, dot_image(pts[k]))
    ts = M.timeline(25, 1.0, 0.2)
    frames = list(M.smile_frames(img_dot, pts, ts))
    assert len(frames) == 25
    np.testing.assert_array_equal(frames[0], img_dot)
    target = M.smile_points(pts)[k]
    assert np.linalg.norm(dot_centre(frames[-1], target, radius=4) - target) < 1.0
    eyes = cv2.boundingRect(np.round(pts[36:48]).astype(np.int32))
    x, y, w, h = eyes
    region = np.s_[y - 2:y + h + 2, x - 2:x + w + 2]
    assert np.abs(frames[-1][region].astype(int) - img_dot[region]).max() <= 2
    assert frames[-1] is frames[-2]  # the end hold is not re-rendered
    mouth = np.s_[int(pts[50, 1]) - 10:int(pts[57, 1]) + 10, int(pts[48, 0]) - 10:int(pts[54, 0]) + 10]
    assert np.abs(frames[-1][mouth].astype(int) - img_dot[mouth]).mean() > 5


def test_reference_shape_is_a_plausible_face():
    pts = M.reference_shape(512)
    assert pts.shape == (68, 2)
    assert (pts > 0).all() and (pts < 512).all()
    d, u, v = M.face_axes(pts)
    assert 100 < d < 140  # FFHQ: eye centres ~0.24 of the crop apart
    np.testing.assert_allclose(u, [1, 0], atol=1e-6)
    np.testing.assert_allclose(v, [0, 1], atol=1e-6)
    assert pts[8, 1] > pts[57, 1] > pts[33, 1] > pts[39, 1] > pts[19, 1]  # chin<mouth<nose<eyes<brows
