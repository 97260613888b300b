"""Classical landmark morph and smile: the default renderer's frames.

Everything works on aligned square face crops, ``(S, S, 3)`` uint8 RGB (FFHQ-style, S = 512 by
default), and their 68 iBUG/dlib landmarks, ``(68, 2)`` float32 ``(x, y)`` in crop pixels with
pixel centres at integer coordinates (OpenCV's convention, which the aligner uses).

Morph (visitor A into celebrity B)
----------------------------------
1. :func:`morph_points` appends the same border points to both landmark sets (corners and three
   points on each edge of a box just outside the frame), so the triangulation covers every
   pixel and the frame's edges stay put while the face moves.
2. :func:`triangulate` runs Delaunay ONCE per pair, on the mean of the two shapes; the same
   triangles are used for every frame, so the mesh never changes topology mid-clip.
3. For each frame ``t`` the intermediate shape is ``P = (1 - t) A + t B``; both photos are warped
   onto ``P`` with a piecewise-affine map (one affine per triangle) and cross-dissolved with
   weight ``t``.  The maps are computed densely: triangle ids are rasterised into an int32 map,
   each pixel's affine is gathered and evaluated with numpy, and ``cv2.remap`` samples the photo
   (bilinear, reflected borders).  A dense map is continuous across triangle edges, so there
   are no seams or black cracks by construction.
4. Speed: the map is evaluated on a grid of every ``step``-th pixel (2 by default) and
   upsampled bilinearly; inside a triangle the map is affine, so bilinear upsampling is exact
   there, and next to an edge the error is well under a pixel.  About 4-5 ms per 512 px
   morph frame on two cores, of which ``cv2.remap`` is about half.
5. :func:`timeline` gives the frame times: ``t`` eased with a cosine ease-in-out and held still
   at both ends; :func:`morph_frames` renders each distinct ``t`` once and yields the very same
   (read-only) array again for repeated ``t`` (the holds).

Smile (:func:`smile_points`)
----------------------------
The classical renderer cannot invent teeth or new wrinkles, so it approximates a *closed-mouth*
smile by moving landmarks only; :func:`smile_frames` warps the one photo from the neutral shape
to the smiling one with the same machinery (no dissolve).  Distances are in units of the
inter-ocular distance ``d`` (between the two eye centres, ~0.24 of an FFHQ crop, ~124 px at
512) measured along the face's own axes (``u`` from the subject's right eye to left eye, ``v``
perpendicular pointing down the face), so the smile does not depend on crop size or a slight
head roll.  At ``strength = 1``:

* **Mouth (48-67).**  Each mouth point gets a horizontal coordinate ``s`` in [-1, 1] from the
  mouth centre (midpoint of the corners 48/54) to the corners.  It moves *outward* by
  ``0.08 d * s`` (the mouth widens by ~16 % of d, as the zygomaticus pulls the corners toward the
  cheekbones) and *up* by ``0.11 d * s**2``.  So the corners 48/54 rise most (0.11 d, ~14 px
  at 512) and go outward 0.08 d (~10 px); the outer-lip points next to them (49/53, 55/59,
  s ~ 0.65) rise ~40 % as much and widen ~65 % as much, the inner corners (60/64) ~75 %; the
  centres of both lips (51, 57, 62, 66) do not move.  This parabola is what turns the lip line
  into the upward curve of a smile, for the upper and the lower lip alike.
* **Inner lips (60-67).**  Same rule, but the facing pairs (61, 67), (62, 66) and (63, 65) get
  the same displacement (their mean), so a closed mouth stays closed and an open one keeps its
  gap: opening it would stretch lip pixels where teeth should appear.
* **Cheeks (jaw 3-5 and 11-13).**  Lifted by ``0.03 d`` (4, 12) and ``0.02 d`` (3, 5, 11, 13),
  a hint of the cheek bulge that the raised corners push up, and it spreads the stretch of the
  skin between the mouth corners and the jaw over a larger area.
* **Everything else** (brows, eyes, nose, chin 6-10, upper jaw) stays fixed: the identity
  features and the eyes do not move, so the smile reads as an expression change, not a face
  change.  (A real Duchenne smile also narrows the eyes; we leave them alone.)

Negative strengths give the opposite (a frown), which the renderer does not use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

# --- reference shape ---------------------------------------------------------------------------

#: Mean 68-point shape of an FFHQ-aligned face in units of the crop side (multiply by S for
#: pixels).  Measured with dlib's 68-point predictor on the 98 fixture photos, aligned with the
#: FFHQ recipe, then made left-right symmetric.  Used by tests and as a fallback shape.
MEAN_SHAPE_68 = np.array([
    (0.2182, 0.4811), (0.2214, 0.5557), (0.2291, 0.6309), (0.2428, 0.7052),
    (0.2695, 0.7754), (0.3128, 0.8370), (0.3669, 0.8896), (0.4290, 0.9323),
    (0.5000, 0.9453), (0.5710, 0.9323), (0.6331, 0.8896), (0.6872, 0.8370),
    (0.7305, 0.7754), (0.7572, 0.7052), (0.7709, 0.6309), (0.7786, 0.5557),
    (0.7818, 0.4811), (0.2769, 0.4271), (0.3099, 0.3957), (0.3569, 0.3853),
    (0.4061, 0.3916), (0.4525, 0.4111), (0.5475, 0.4111), (0.5939, 0.3916),
    (0.6431, 0.3853), (0.6901, 0.3957), (0.7231, 0.4271), (0.5000, 0.4655),
    (0.5000, 0.5121), (0.5000, 0.5583), (0.5000, 0.6062), (0.4446, 0.6404),
    (0.4710, 0.6503), (0.5000, 0.6594), (0.5290, 0.6503), (0.5554, 0.6404),
    (0.3327, 0.4755), (0.3622, 0.4589), (0.3966, 0.4591), (0.4267, 0.4804),
    (0.3944, 0.4857), (0.3608, 0.4854), (0.5733, 0.4804), (0.6034, 0.4591),
    (0.6378, 0.4589), (0.6673, 0.4755), (0.6392, 0.4854), (0.6056, 0.4857),
    (0.3852, 0.7324), (0.4261, 0.7125), (0.4688, 0.7048), (0.5000, 0.7115),
    (0.5312, 0.7048), (0.5739, 0.7125), (0.6148, 0.7324), (0.5760, 0.7786),
    (0.5336, 0.7994), (0.5000, 0.8033), (0.4664, 0.7994), (0.4240, 0.7786),
    (0.4017, 0.7348), (0.4684, 0.7276), (0.5000, 0.7306), (0.5316, 0.7276),
    (0.5983, 0.7348), (0.5324, 0.7635), (0.5000, 0.7678), (0.4676, 0.7635),
], dtype=np.float32)
MEAN_SHAPE_68.flags.writeable = False

# Landmark groups (iBUG 300-W order).
JAW = range(0, 17)
BROWS = range(17, 27)
NOSE = range(27, 36)
EYES = range(36, 48)
MOUTH = range(48, 68)
#: Upper/lower inner-lip points that face each other; they move together in a smile.
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))

#: Grid step of the dense warp map (1 = every pixel, exact; 2 = 4x fewer evaluations).
DEFAULT_MAP_STEP = 2
#: Border points per frame edge, corners excluded.
BORDER_POINTS_PER_EDGE = 3

# Smile parameters, in inter-ocular distances at strength 1 (see the module docstring).
SMILE_WIDEN = 0.08
SMILE_LIFT = 0.11
SMILE_CHEEK_LIFT = {3: 0.02, 4: 0.03, 5: 0.02, 11: 0.02, 12: 0.03, 13: 0.02}


def reference_shape(size: int) -> np.ndarray:
    """:data:`MEAN_SHAPE_68` in pixels of a ``size`` x ``size`` crop: ``(68, 2)`` float32."""
    return (MEAN_SHAPE_68 * np.float32(size)).astype(np.float32)


# --- geometry -----------------------------------------------------------------------------------

def _as_points(pts: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(pts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3:
        raise ValueError(f"{name}: expected (N, 2) points, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: points must be finite")
    return arr


def _frame_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as (height, width): an int is a square side."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def border_points(size: int | tuple[int, int], *point_sets: np.ndarray,
                  per_edge: int = BORDER_POINTS_PER_EDGE) -> np.ndarray:
    """Fixed points on a box around the frame: ``(4 + 4 * per_edge, 2)`` float64.

    The box is the frame (pixel centres 0 .. side-1) grown by 2 px, grown further to enclose
    any landmark that lies outside the frame, so every pixel is inside the triangulation.
    """
    h, w = _frame_hw(size)
    lo = np.array([-2.0, -2.0])
    hi = np.array([w + 1.0, h + 1.0])
    for pts in point_sets:
        lo = np.minimum(lo, pts.min(axis=0) - 2.0)
        hi = np.maximum(hi, pts.max(axis=0) + 2.0)
    fx = np.linspace(lo[0], hi[0], per_edge + 2)
    fy = np.linspace(lo[1], hi[1], per_edge + 2)
    top = np.stack([fx, np.full_like(fx, lo[1])], axis=1)
    bottom = np.stack([fx, np.full_like(fx, hi[1])], axis=1)
    left = np.stack([np.full_like(fy[1:-1], lo[0]), fy[1:-1]], axis=1)
    right = np.stack([np.full_like(fy[1:-1], hi[0]), fy[1:-1]], axis=1)
    return np.concatenate([top, bottom, left, right])


def morph_points(pts_a: np.ndarray, pts_b: np.ndarray,
                 size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Both landmark sets with the same border points appended: two ``(N, 2)`` float64 arrays.

    ``N = len(pts_a) + 4 + 4 * BORDER_POINTS_PER_EDGE`` (68 + 16 = 84 for dlib points).
    ``size`` is the frame side (or ``(height, width)``) in pixels.
    """
    a = _as_points(pts_a, "pts_a")
    b = _as_points(pts_b, "pts_b")
    if a.shape != b.shape:
        raise ValueError(f"landmark sets differ in shape: {a.shape} vs {b.shape}")
    border = border_points(size, a, b)
    return np.concatenate([a, border]), np.concatenate([b, border])


@dataclass(frozen=True)
class Mesh:
    """A triangulation: ``triangles`` ``(T, 3)`` int32 vertex indices and ``neighbours``
    ``(T, 3)`` int32, the triangle across the edge opposite each vertex (-1 on the hull)."""

    triangles: np.ndarray
    neighbours: np.ndarray

    def __len__(self) -> int:
        return len(self.triangles)


def triangulate(points: np.ndarray) -> Mesh:
    """Delaunay mesh of ``points`` ``(N, 2)``.

    Coincident points (a closed mouth's inner lips can coincide) are left out of the mesh by
    Qhull and simply follow their neighbours.
    """
    pts = _as_points(points, "points")
    dl = Delaunay(pts)
    return Mesh(triangles=np.ascontiguousarray(dl.simplices, dtype=np.int32),
                neighbours=np.ascontiguousarray(dl.neighbors, dtype=np.int32))


def _affine_table(dst: np.ndarray, srcs: Sequence[np.ndarray], tris: np.ndarray) -> np.ndarray:
    """Per-triangle affines of the ``dst`` mesh as one lookup table, one column per triangle.

    ``(6 + 6k, T + 1)`` float32.  Rows 0-5 give the first two barycentric coordinates of an
    output pixel (x, y) in the triangle: ``l0 = r0 x + r1 y + r2``, ``l1 = r3 x + r4 y + r5``
    (the third is ``1 - l0 - l1``).  Rows ``6 + 6j .. 11 + 6j`` map (x, y) to source j:
    ``x_src = c0 x + c1 y + c2``, ``y_src = c3 x + c4 y + c5``.  The extra last column stands
    for "no triangle": barycentrics (1, 0, 0) and the identity map, so a gap would be harmless
    rather than garbage.
    """
    t = len(tris)
    d = dst[tris]  # (T, 3, 2)
    mat = np.concatenate([d, np.ones((t, 3, 1))], axis=2)  # rows [x_i, y_i, 1]
    rhs = np.concatenate([s[tris] for s in srcs], axis=2)  # (T, 3, 2k)
    # A triangle squashed flat at this t covers (almost) no pixel centre; give it a harmless
    # stand-in instead of dividing by ~0: the mean translation of its corners.
    det = np.linalg.det(mat)
    bad = np.abs(det) < 1e-6
    if bad.any():
        mat[bad] = np.eye(3)
    inv = np.linalg.inv(mat)  # q^T = lambda^T mat  ->  lambda = inv^T q
    sol = inv @ rhs  # (T, 3, 2k): [x, y, 1] @ sol = source point
    if bad.any():
        shift = rhs[bad].mean(axis=1) - np.tile(d[bad].mean(axis=1), len(srcs))
        sol[bad] = 0.0
        sol[bad, 0, 0::2] = 1.0
        sol[bad, 1, 1::2] = 1.0
        sol[bad, 2, :] = shift
        inv[bad] = 0.0
        inv[bad, 2, 0] = 1.0  # barycentrics (1, 0, 0): never "outside", never re-assigned
    k = len(srcs)
    table = np.empty((6 + 6 * k, t + 1), dtype=np.float32)
    table[0:3, :t] = inv[:, :, 0].T
    table[3:6, :t] = inv[:, :, 1].T
    table[0:6, t] = (0, 0, 1, 0, 0, 0)
    for j in range(k):
        r = 6 + 6 * j
        table[r + 0:r + 3, :t] = sol[:, :, 2 * j].T
        table[r + 3:r + 6, :t] = sol[:, :, 2 * j + 1].T
        table[r:r + 6, t] = (1, 0, 0, 0, 1, 0)
    return table


class _Workspace:
    """Scratch arrays reused from frame to frame, by name.

    Fresh multi-megabyte arrays are fresh pages: on this VM the page faults of allocating
    every per-frame temporary anew cost as much as the arithmetic (kernel time ~40 % of the
    warp).  Frames handed to the caller are always new arrays; only temporaries live here.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._bufs[name] = buf
        return buf


def _affine_eval(c: np.ndarray, xs: np.ndarray, ys: np.ndarray, out: np.ndarray,
                 tmp: np.ndarray) -> np.ndarray:
    """``out = c[0] * xs + c[1] * ys + c[2]`` (xs a row, ys a column), float32, in place."""
    np.multiply(c[0], xs, out=out)
    np.multiply(c[1], ys, out=tmp)
    out += tmp
    out += c[2]
    return out


#: How far (in barycentric units) a grid cell may lie outside the triangle it was drawn with
#: before it is handed to the neighbour; rasterising is conservative by up to ~1 cell.
_OUTSIDE_TOL = -1e-4
#: Most edges a misassigned cell is walked across; next to a vertex where many thin triangles
#: meet, the walk can need a few steps.
_MAX_WALK = 8


def _gather(grid_pts: np.ndarray, mesh: Mesh, table: np.ndarray, xs: np.ndarray,
            ys: np.ndarray, ws: _Workspace) -> np.ndarray:
    """Each grid cell's column of ``table`` (its triangle's affines): ``(rows, gh, gw)``.

    Triangle ids are rasterised with ``cv2.fillConvexPoly`` (vertices in grid coordinates, 4
    fractional bits).  It also paints cells whose centre lies just outside a triangle, so a
    shared edge's cells go to whichever triangle is drawn last.  The map is continuous, so that
    is only slightly wrong, but where the wrong triangle is much more stretched than the right
    one it reaches ~1 px.  So cells found outside their triangle (a negative barycentric) move
    to the neighbour across the edge they are furthest beyond, walking a few steps if need be.
    """
    gh, gw = ys.shape[0], xs.shape[1]
    t = len(mesh)
    ids = ws.get("ids", (gh, gw), np.int32)
    ids.fill(t)  # t = the "no triangle" column
    verts = np.round(grid_pts[mesh.triangles] * 16.0).astype(np.int32)
    for k in range(t):
        cv2.fillConvexPoly(ids, verts[k], k, lineType=cv2.LINE_8, shift=4)
    c = ws.get("gathered", (table.shape[0], gh, gw))
    np.take(table, ids, axis=1, out=c, mode="clip")  # ids are valid; clip skips buffering

    tmp = ws.get("tmp", (gh, gw))
    l0 = _affine_eval(c[0:3], xs, ys, ws.get("l0", (gh, gw)), tmp)
    l1 = _affine_eval(c[3:6], xs, ys, ws.get("l1", (gh, gw)), tmp)
    l2 = np.subtract(1.0, l0, out=tmp)
    l2 -= l1
    lmin = np.minimum(l0, l1, out=l0)
    np.minimum(lmin, l2, out=lmin)
    yi, xi = np.nonzero(np.less(lmin, _OUTSIDE_TOL, out=ws.get("outside", (gh, gw), np.bool_)))
    if len(yi) == 0:
        return c
    nbrs = np.vstack([mesh.neighbours, np.full((1, 3), -1, np.int32)])
    cur = ids[yi, xi]
    px, py = xs[0, xi], ys[yi, 0]

    def bary_of(cells: np.ndarray, tri: np.ndarray) -> np.ndarray:
        bc = table[0:6, tri]
        a0 = bc[0] * px[cells] + bc[1] * py[cells] + bc[2]
        a1 = bc[3] * px[cells] + bc[4] * py[cells] + bc[5]
        return np.stack([a0, a1, 1.0 - a0 - a1])

    todo = np.arange(len(cur))
    lam = bary_of(todo, cur)
    for _ in range(_MAX_WALK):
        # Step across the edge the cell is furthest beyond (a walk through the mesh).
        nb = nbrs[cur[todo], lam.argmin(axis=0)]
        go = nb >= 0
        todo, nb = todo[go], nb[go]
        if len(todo) == 0:
            break
        cur[todo] = nb
        lam = bary_of(todo, nb)
        still = lam.min(axis=0) < _OUTSIDE_TOL
        todo, lam = todo[still], lam[:, still]
        if len(todo) == 0:
            break
    c[:, yi, xi] = table[:, cur]
    return c


def _upsample_map(m: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Bilinear ``(gh, gw, 2)`` -> ``out`` ``(h, w, 2)``, extrapolating linearly at the edge.

    cv2.resize clamps outside the outermost cell centres, which would shift the outermost
    ``step // 2`` rows and columns by up to half a cell; the map is affine there (the border
    triangles are large), so a linear extrapolation from the next two rows is exact.
    """
    gh, gw = m.shape[:2]
    h, w = out.shape[:2]
    up = cv2.resize(m, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
    ky = -(-h // gh) // 2
    kx = -(-w // gw) // 2
    if ky and h > 2 * ky + 2:
        for i in range(ky):
            up[i] = up[ky] + (ky - i) * (up[ky] - up[ky + 1])
            j = h - 1 - i
            up[j] = up[h - 1 - ky] + (ky - i) * (up[h - 1 - ky] - up[h - 2 - ky])
    if kx and w > 2 * kx + 2:
        for i in range(kx):
            up[:, i] = up[:, kx] + (kx - i) * (up[:, kx] - up[:, kx + 1])
            j = w - 1 - i
            up[:, j] = up[:, w - 1 - kx] + (kx - i) * (up[:, w - 1 - kx] - up[:, w - 2 - kx])
    return up


def _warp_maps(dst_pts: np.ndarray, src_sets: Sequence[np.ndarray], mesh: Mesh,
               shape: tuple[int, int], step: int, ws: _Workspace) -> list[np.ndarray]:
    """:func:`warp_maps` writing into ``ws`` buffers (valid until the next call with ``ws``)."""
    h, w = shape
    dst = np.asarray(dst_pts, dtype=np.float64)
    table = _affine_table(dst, [np.asarray(s, dtype=np.float64) for s in src_sets],
                          mesh.triangles)
    gh, gw = (h, w) if step <= 1 else (-(-h // step), -(-w // step))
    # Grid cell i sits at full-res coordinate (i + 0.5) * w / gw - 0.5, which is where
    # cv2.resize (pixel-centre aligned) puts it when upsampling gw -> w.
    sx, sy = w / gw, h / gh
    xs = ((np.arange(gw) + 0.5) * sx - 0.5).astype(np.float32)[None, :]
    ys = ((np.arange(gh) + 0.5) * sy - 0.5).astype(np.float32)[:, None]
    c = _gather((dst + 0.5) / (sx, sy) - 0.5, mesh, table, xs, ys, ws)

    maps = []
    tmp = ws.get("tmp", (gh, gw))
    mx, my = ws.get("mx", (gh, gw)), ws.get("my", (gh, gw))
    for j in range(len(src_sets)):
        r = 6 + 6 * j
        _affine_eval(c[r:r + 3], xs, ys, mx, tmp)
        _affine_eval(c[r + 3:r + 6], xs, ys, my, tmp)
        if (gh, gw) == (h, w):
            maps.append(cv2.merge([mx, my], dst=ws.get(f"map{j}", (h, w, 2))))
        else:
            m = cv2.merge([mx, my], dst=ws.get("grid_map", (gh, gw, 2)))
            maps.append(_upsample_map(m, ws.get(f"map{j}", (h, w, 2))))
    return maps


def warp_maps(dst_pts: np.ndarray, src_sets: Sequence[np.ndarray], mesh: Mesh,
              shape: tuple[int, int], step: int = DEFAULT_MAP_STEP) -> list[np.ndarray]:
    """Dense ``cv2.remap`` maps that pull each source shape onto ``dst_pts``.

    ``dst_pts`` and every ``src_sets[j]`` are ``(N, 2)`` pixel coordinates (border points
    included) over which ``mesh`` is built; ``shape`` is the output ``(height, width)``.
    Returns one ``(H, W, 2)`` float32 map per source: for output pixel (x, y), the source pixel
    to sample.  ``step`` 1 gives the exact piecewise-affine map; ``step`` > 1 evaluates it on a
    grid ``step`` times coarser and upsamples bilinearly: exact inside triangles, off by
    ~0.1-0.3 px (at most ~0.7 px) in cells that straddle an edge.
    """
    return _warp_maps(dst_pts, src_sets, mesh, shape, step, _Workspace())


def _remap(img: np.ndarray, m: np.ndarray, ws: _Workspace | None = None,
           dst: np.ndarray | None = None) -> np.ndarray:
    """Bilinear sampling of ``img`` at map ``m`` (H, W, 2), mirrored outside the frame.

    The float map is converted to OpenCV's fixed-point form first (1/32 px, what remap uses
    internally anyway): converting once up front is ~30 % faster than letting remap do it.
    """
    h, w = m.shape[:2]
    if ws is None:
        xy, frac = cv2.convertMaps(m, None, cv2.CV_16SC2)
    else:
        xy, frac = cv2.convertMaps(m, None, cv2.CV_16SC2,
                                   dstmap1=ws.get("xy", (h, w, 2), np.int16),
                                   dstmap2=ws.get("frac", (h, w), np.uint16))
    return cv2.remap(img, xy, frac, dst=dst, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def warp_image(img: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray,
               mesh: Mesh | None = None, step: int = DEFAULT_MAP_STEP) -> np.ndarray:
    """Warp ``img`` so that its landmarks ``src_pts`` move to ``dst_pts`` (both ``(N, 2)``).

    Border points are added here; pass ``mesh`` (over the points *with* border, as from
    :func:`triangulate` on :func:`morph_points` output) to reuse a mesh.  Returns a new image of
    the same shape and dtype.
    """
    h, w = img.shape[:2]
    src, dst = morph_points(src_pts, dst_pts, (h, w))
    if mesh is None:
        mesh = triangulate((src + dst) * 0.5)
    (m,) = warp_maps(dst, [src], mesh, (h, w), step)
    return _remap(img, m)


# --- timing -------------------------------------------------------------------------------------

def ease(u: float) -> float:
    """Cosine ease-in-out on [0, 1]: starts and ends with zero speed, ``ease(0.5) = 0.5``."""
    u = min(max(float(u), 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * u)


def timeline(fps: float, seconds: float, hold_seconds: float = 0.0) -> list[float]:
    """Per-frame ``t`` values of a clip: holds at t = 0, an eased ramp, holds at t = 1.

    The clip has ``round(fps * seconds)`` frames in all (``seconds`` is the whole clip, holds
    included).  ``round(fps * hold_seconds)`` extra frames of ``t = 0`` lead and of ``t = 1``
    trail the ramp (shortened if the clip is too short to keep a ramp of 2 frames); the ramp
    itself starts exactly at 0 and ends exactly at 1 and is non-decreasing.
    """
    if fps <= 0 or seconds <= 0 or hold_seconds < 0:
        raise ValueError("fps and seconds must be > 0 and hold_seconds >= 0")
    n = max(2, round(fps * seconds))
    hold = min(round(fps * hold_seconds), (n - 2) // 2)
    ramp = n - 2 * hold
    ts = [0.0] * hold
    ts += [ease(i / (ramp - 1)) for i in range(ramp)]
    ts += [1.0] * hold
    ts[hold] = 0.0
    ts[hold + ramp - 1] = 1.0
    return ts


# --- morph --------------------------------------------------------------------------------------

def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{name}: expected (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def _frozen(frame: np.ndarray) -> np.ndarray:
    """Mark a yielded frame read-only: repeated ``t`` yields the same array object."""
    frame.flags.writeable = False
    return frame


class _MorphPair:
    """Everything about one pair that does not depend on t (mesh, border points)."""

    def __init__(self, img_a: np.ndarray, pts_a: np.ndarray, img_b: np.ndarray,
                 pts_b: np.ndarray, step: int) -> None:
        self.img_a = _check_image(img_a, "img_a")
        self.img_b = _check_image(img_b, "img_b")
        if self.img_a.shape != self.img_b.shape:
            raise ValueError(f"images differ in shape: {self.img_a.shape} vs {self.img_b.shape}")
        self.shape = self.img_a.shape[:2]
        self.a, self.b = morph_points(pts_a, pts_b, self.shape)
        self.tris = triangulate((self.a + self.b) * 0.5)
        self.step = step
        self.ws = _Workspace()

    def frame(self, t: float) -> np.ndarray:
        if t <= 0.0:
            return self.img_a.copy()
        if t >= 1.0:
            return self.img_b.copy()
        mid = (1.0 - t) * self.a + t * self.b
        ws = self.ws
        ma, mb = _warp_maps(mid, [self.a, self.b], self.tris, self.shape, self.step, ws)
        wa = _remap(self.img_a, ma, ws, dst=ws.get("warped_a", self.img_a.shape, np.uint8))
        wb = _remap(self.img_b, mb, ws, dst=ws.get("warped_b", self.img_b.shape, np.uint8))
        return cv2.addWeighted(wa, 1.0 - t, wb, t, 0.0)  # a new array: it is handed out


def morph_frames(img_a: np.ndarray, pts_a: np.ndarray, img_b: np.ndarray, pts_b: np.ndarray,
                 ts: Iterable[float], *, step: int = DEFAULT_MAP_STEP) -> Iterator[np.ndarray]:
    """Morph frames from face A to face B, one per ``t`` in ``ts`` (0 = A, 1 = B).

    Images are ``(S, S, 3)`` uint8 RGB of the same shape, points ``(68, 2)`` in their pixels.
    Yields read-only ``(S, S, 3)`` uint8 frames; a ``t`` equal to the previous one yields the
    same array again without rendering (holds cost nothing).  The mesh is built once, on the
    first call to ``next``.
    """
    pair = _MorphPair(img_a, pts_a, img_b, pts_b, step)
    last_t: float | None = None
    last: np.ndarray | None = None
    for t in ts:
        t = float(t)
        if last is None or t != last_t:
            last, last_t = _frozen(pair.frame(t)), t
        yield last


def morph_frame(img_a: np.ndarray, pts_a: np.ndarray, img_b: np.ndarray, pts_b: np.ndarray,
                t: float, *, step: int = DEFAULT_MAP_STEP) -> np.ndarray:
    """One morph frame at ``t`` (writable ``(S, S, 3)`` uint8)."""
    return _MorphPair(img_a, pts_a, img_b, pts_b, step).frame(float(t))


def halfway_frame(img_a: np.ndarray, pts_a: np.ndarray, img_b: np.ndarray, pts_b: np.ndarray,
                  *, step: int = DEFAULT_MAP_STEP) -> np.ndarray:
    """The poster: the morph at ``t = 0.5``, half A and half B in shape and colour."""
    return morph_frame(img_a, pts_a, img_b, pts_b, 0.5, step=step)


# --- smile --------------------------------------------------------------------------------------

def face_axes(pts: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(d, u, v)``: inter-ocular distance in pixels, unit vector from the subject's right eye
    centre (image left) to the left eye centre, and the unit vector perpendicular to it pointing
    down the face (image +y when upright)."""
    p = np.asarray(pts, dtype=np.float64)
    eye_r, eye_l = p[36:42].mean(axis=0), p[42:48].mean(axis=0)
    axis = eye_l - eye_r
    d = float(np.hypot(*axis))
    if d < 1e-6:
        raise ValueError("eye landmarks coincide; cannot measure face scale")
    u = axis / d
    v = np.array([-u[1], u[0]])
    return d, u, v


def smile_points(pts: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """The 68 landmarks moved into a closed-mouth smile: ``(68, 2)`` float32.

    See the module docstring for which points move and how far.  ``strength`` scales every
    displacement linearly (0 = unchanged, 1 = full smile).
    """
    p = _as_points(pts, "pts")
    if len(p) != 68:
        raise ValueError(f"smile needs the 68 dlib landmarks, got {len(p)}")
    d, u, v = face_axes(p)
    out = p.copy()

    mouth = np.arange(48, 68)
    centre = (p[48] + p[54]) * 0.5
    half = abs(float((p[54] - p[48]) @ u)) * 0.5
    if half < 1e-6:
        raise ValueError("mouth corners coincide; cannot place a smile")
    s = np.clip(((p[mouth] - centre) @ u) / half, -1.0, 1.0)  # -1 at 48, +1 at 54
    disp = strength * d * (SMILE_WIDEN * s[:, None] * u[None, :]
                           - SMILE_LIFT * (s ** 2)[:, None] * v[None, :])
    disp_by_idx = dict(zip(mouth.tolist(), disp))
    for upper, lower in INNER_LIP_PAIRS:
        shared = (disp_by_idx[upper] + disp_by_idx[lower]) * 0.5
        disp_by_idx[upper] = disp_by_idx[lower] = shared
    for i, dv in disp_by_idx.items():
        out[i] = p[i] + dv
    for i, lift in SMILE_CHEEK_LIFT.items():
        out[i] = p[i] - strength * d * lift * v
    return out.astype(np.float32)


def smile_frames(img: np.ndarray, pts: np.ndarray, ts: Iterable[float], strength: float = 1.0,
                 *, step: int = DEFAULT_MAP_STEP) -> Iterator[np.ndarray]:
    """Frames of the face going from neutral (t = 0) to smiling (t = 1), one per ``t``.

    ``img`` is ``(S, S, 3)`` uint8, ``pts`` its ``(68, 2)`` landmarks; ``ts`` usually
    :func:`timeline` values (eased, with holds).  The photo is warped, not blended, so every
    frame is the visitor's own pixels.  Repeated ``t`` yields the same read-only array.
    """
    image = _check_image(img, "img")
    h, w = image.shape[:2]
    neutral, smiling = morph_points(pts, smile_points(pts, strength), (h, w))
    tris = triangulate((neutral + smiling) * 0.5)
    ws = _Workspace()
    last_t: float | None = None
    last: np.ndarray | None = None
    for t in ts:
        t = float(t)
        if last is None or t != last_t:
            if t == 0.0:
                frame = image.copy()
            else:
                shape = neutral + t * (smiling - neutral)
                (m,) = _warp_maps(shape, [neutral], tris, (h, w), step, ws)
                frame = _remap(image, m, ws)  # a new array: it is handed out
            last, last_t = _frozen(frame), t
        yield last
