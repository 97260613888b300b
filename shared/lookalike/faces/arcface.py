"""ArcFace recognition (insightface's ``w600k_*.onnx``, ``glintr100.onnx``): alignment maths.

The recogniser expects a 112 x 112 crop in which the 5 key points (eye centres, nose tip,
mouth corners) sit on a fixed template. The crop comes from the similarity transform
(rotation, uniform scale, translation) that maps the face's 5 points onto the template in the
least-squares sense (Umeyama 1991, what insightface gets from scikit-image's
``SimilarityTransform.estimate``); pixels are fed as (x - 127.5) / 127.5 in RGB order.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

#: insightface's ``arcface_dst``: where the 5 points go in the 112 x 112 crop, in the order
#: photo-left eye, photo-right eye, nose tip, photo-left mouth corner, photo-right mouth corner
ARCFACE_DST = np.array([[38.2946, 51.6963],
                        [73.5318, 51.5014],
                        [56.0252, 71.7366],
                        [41.5493, 92.3655],
                        [70.7299, 92.2041]], dtype=np.float32)
ARCFACE_SIZE = 112


def keypoints5_from_68(landmarks: np.ndarray) -> np.ndarray:
    """The 5 ArcFace points (5, 2) from the 68 iBUG landmarks, in the template's order.

    Eye centres are the means of points 36-41 and 42-47, the nose tip is point 30 and the
    mouth corners are points 48 and 54.
    """
    lm = np.asarray(landmarks, dtype=np.float32).reshape(68, 2)
    return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of the similarity transform that best maps ``src`` (N, 2) onto ``dst``.

    Least squares over rotation, uniform scale and translation, in closed form (Umeyama,
    "Least-squares estimation of transformation parameters between two point patterns",
    1991) — the same estimate as scikit-image's ``SimilarityTransform`` without the package.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n  # (2, 2)
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ValueError("the key points coincide; no transform can be estimated")
    d = np.ones(dim)  # a reflection is never allowed: flip the last axis if needed
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    if rank == dim - 1:  # collinear points: the sign comes from U and V alone
        flip = np.ones(dim)
        if np.linalg.det(u) * np.linalg.det(vt) <= 0:
            flip[-1] = -1
        rot = u @ np.diag(flip) @ vt
    else:
        rot = u @ np.diag(d) @ vt
    scale = (s @ d) / src_c.var(axis=0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def norm_crop(rgb: np.ndarray, keypoints5: np.ndarray,
              size: int = ARCFACE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The recogniser's (size, size, 3) crop and the (2, 3) photo → crop transform.

    Outside the photo the crop is black, as in insightface's ``norm_crop``.
    """
    dst = ARCFACE_DST * (size / ARCFACE_SIZE)
    matrix = similarity_transform(np.asarray(keypoints5, np.float64).reshape(5, 2), dst)
    crop = cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, matrix


def to_blob(crop_rgb: np.ndarray, mean: float = 127.5, std: float = 127.5) -> np.ndarray:
    """(1, 3, S, S) float32 in RGB order, (x - mean) / std."""
    x = (crop_rgb.astype(np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


# --- input normalisation of a model file ------------------------------------------------------

def input_normalisation(path: Path | str) -> tuple[float, float]:
    """(mean, std) the recogniser expects its pixels normalised with.

    Models converted from MXNet normalise inside the graph (their first nodes are named
    ``Sub``/``_minus`` and ``Mul``/``_mul``) and take raw pixels: (0, 1). Others take
    (x - 127.5) / 127.5. This is insightface's rule (``ArcFaceONNX.__init__``); the node names
    are read straight from the file's protobuf so no ``onnx`` package is needed.
    """
    names = first_node_names(path, 8)
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return (0.0, 1.0) if has_sub and has_mul else (127.5, 127.5)


def first_node_names(path: Path | str, count: int) -> list[str]:
    """Names of the first ``count`` nodes of an ONNX file's graph (``graph.node[i].name``).

    Walks the protobuf with seeks, so the weights (often hundreds of MB) are never read.
    """
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        graph_end = None
        while fh.tell() < size:  # ModelProto: find field 7, graph
            field, wire = divmod(_read_varint(fh), 8)
            if field == 7 and wire == 2:
                graph_end = _read_varint(fh) + fh.tell()
                break
            _skip(fh, wire)
        if graph_end is None:
            return []
        names: list[str] = []
        while fh.tell() < graph_end and len(names) < count:  # GraphProto: field 1, node
            field, wire = divmod(_read_varint(fh), 8)
            if field == 1 and wire == 2:
                node = fh.read(_read_varint(fh))
                names.append(_node_name(node))
            else:
                _skip(fh, wire)
        return names


def _read_varint(fh) -> int:
    value = shift = 0
    while True:
        byte = fh.read(1)
        if not byte:
            raise ValueError("truncated ONNX file")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7


def _skip(fh, wire: int) -> None:
    if wire == 0:
        _read_varint(fh)
    elif wire == 1:
        fh.seek(8, 1)
    elif wire == 2:
        fh.seek(_read_varint(fh), 1)
    elif wire == 5:
        fh.seek(4, 1)
    else:
        raise ValueError(f"not an ONNX file (protobuf wire type {wire})")


def _node_name(node: bytes) -> str:
    """NodeProto field 3 (name) of a serialised node."""
    fh = io.BytesIO(node)
    while fh.tell() < len(node):
        field, wire = divmod(_read_varint(fh), 8)
        if field == 3 and wire == 2:
            return fh.read(_read_varint(fh)).decode("utf-8", "replace")
        _skip(fh, wire)
    return ""
