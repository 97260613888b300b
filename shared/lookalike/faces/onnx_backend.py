"""The optional backend: an insightface-style ONNX pack (SCRFD detector + ArcFace recogniser).

The operator points ``LOOKALIKE_ONNX_MODEL_DIR`` at a folder holding a pack such as
insightface's ``buffalo_l`` (``det_10g.onnx`` + ``w600k_r50.onnx``) or ``antelopev2``
(``scrfd_10g_bnkps.onnx`` + ``glintr100.onnx``); nothing is downloaded. Files are told apart
by their inputs and outputs, as insightface's model router does, not by their names: the
detector has several outputs (scores, boxes, key points per stride), the recogniser a
112 x 112 input and one output (the embedding). Other files of a pack (landmark, gender/age
models) are ignored.

Models run on onnxruntime: ``LOOKALIKE_ONNX_PROVIDER=auto`` takes CUDA when onnxruntime-gpu
offers it and CPU otherwise; ``cuda`` insists on CUDA and refuses to start without it (no
silent CPU fallback); ``cpu`` never touches a GPU. The provider in use is logged once at start
(logger ``lookalike.faces.onnx``) and shown by ``describe()``.

The 68 landmarks for morphing still come from dlib on the chosen face (shared code in
``lookalike.faces.analyze``); this backend only detects and embeds.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.errors import ConfigError, NoFace
from lookalike.faces import arcface, scrfd
from lookalike.faces.backend import FaceBackend
from lookalike.faces.types import Box, Detection

log = logging.getLogger("lookalike.faces.onnx")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

#: ArcFace models trained on WebFace600K / Glint360K put the cosine similarity of two photos
#: of one person mostly above 0.3 and of two different people mostly below 0.2 (insightface's
#: own comparison demo calls >= 0.28 "the same person" and < 0.2 "not the same"). We place
#: the same-person threshold at cosine 0.30, i.e. on unit vectors a Euclidean distance of
#: sqrt(2 - 2 * 0.30) = sqrt(1.4) ≈ 1.183. Similarity 0.5 then means cosine 0.30, and two
#: unrelated faces (cosine about 0) score about 0.40. Operators can check the value on their
#: own photos with ``lookalike eval``.
ARCFACE_SAME_PERSON_COSINE = 0.30
ARCFACE_SAME_PERSON_DISTANCE = math.sqrt(2.0 - 2.0 * ARCFACE_SAME_PERSON_COSINE)

#: characters of the recogniser file's SHA-1 in ``model_id``: two packs never share a tag
MODEL_HASH_CHARS = 10


def execution_providers(provider: str) -> list[str]:
    """onnxruntime providers for the ``onnx_provider`` setting (auto, cpu or cuda)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "cpu":
        return [CPU]
    if provider == "cuda":
        if CUDA not in available:
            raise ConfigError(
                "LOOKALIKE_ONNX_PROVIDER=cuda, but this onnxruntime offers no CUDAExecutionProvider "
                f"(it offers {', '.join(available)}): install onnxruntime-gpu on a machine with an "
                "NVIDIA GPU, or set LOOKALIKE_ONNX_PROVIDER to auto or cpu")
        return [CUDA, CPU]
    if provider == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise ConfigError(f"LOOKALIKE_ONNX_PROVIDER must be auto, cpu or cuda, not {provider!r}")


# --- finding the models of a pack ------------------------------------------------------------

@dataclass(frozen=True)
class PackFiles:
    detector: Path
    recogniser: Path


def model_kind(path: Path) -> str | None:
    """``"detector"``, ``"recogniser"`` or None (another model of the pack), from the graph's
    inputs and outputs. Raises ConfigError naming the file when it is not a loadable model."""
    session = _session(path, [CPU], inspect_only=True)
    outputs = session.get_outputs()
    shape = session.get_inputs()[0].shape
    if len(outputs) >= 5:
        return "detector"
    if len(shape) == 4 and shape[2] == arcface.ARCFACE_SIZE and shape[3] == arcface.ARCFACE_SIZE \
            and len(outputs) == 1:
        return "recogniser"
    return None


def find_pack(model_dir: Path | str) -> PackFiles:
    """The detector and recogniser files in ``model_dir``; ConfigError saying what is missing."""
    model_dir = Path(model_dir).expanduser()
    where = f"the ONNX model folder {model_dir} (LOOKALIKE_ONNX_MODEL_DIR)"
    if not model_dir.is_dir():
        raise ConfigError(f"{where} does not exist or is not a folder")
    files = sorted(p for p in model_dir.glob("*.onnx") if p.is_file())
    if not files:
        raise ConfigError(f"{where} has no .onnx files: put a detector (det_*.onnx) and a "
                          "recogniser (w600k_*.onnx or glintr100.onnx) there, as in buffalo_l")
    found: dict[str, list[Path]] = {"detector": [], "recogniser": []}
    for f in files:
        kind = model_kind(f)
        if kind:
            found[kind].append(f)
    missing = [k for k, v in found.items() if not v]
    if missing:
        what = {"detector": "face detector (SCRFD, e.g. det_10g.onnx: several outputs)",
                "recogniser": "face recogniser (ArcFace, e.g. w600k_r50.onnx: 112x112 input, "
                              "one output)"}
        raise ConfigError(f"{where} has no {' and no '.join(what[k] for k in missing)} "
                          f"among {', '.join(f.name for f in files)}")
    for kind, paths in found.items():
        if len(paths) > 1:
            raise ConfigError(f"{where} has several {kind}s ({', '.join(p.name for p in paths)}): "
                              "keep one pack per folder")
    return PackFiles(detector=found["detector"][0], recogniser=found["recogniser"][0])


def _session(path: Path, providers: list[str], *, inspect_only: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's own warnings go through our checks instead
    if inspect_only:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ConfigError(f"cannot load the ONNX model {path}: {exc}") from None


def file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fixed(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


# --- the backend ------------------------------------------------------------------------------

class OnnxBackend(FaceBackend):
    """SCRFD detection and ArcFace embedding on onnxruntime; sessions made once per instance."""

    name = "onnx"
    same_person_distance = ARCFACE_SAME_PERSON_DISTANCE

    def __init__(self, detector: Path | str, recogniser: Path | str, *, provider: str = "auto",
                 det_thresh: float = scrfd.DET_THRESH, nms_thresh: float = scrfd.NMS_THRESH) -> None:
        self.detector_path = Path(detector)
        self.recogniser_path = Path(recogniser)
        self.det_thresh = det_thresh
        self.nms_thresh = nms_thresh
        providers = execution_providers(provider)
        self._det = _session(self.detector_path, providers)
        self._rec = _session(self.recogniser_path, providers)
        self.provider = self._provider_in_use(provider, providers)

        det_in = self._det.get_inputs()[0]
        self._det_input = det_in.name
        w, h = _fixed(det_in.shape[3]), _fixed(det_in.shape[2])
        self.input_size = (w, h) if w and h else scrfd.DEFAULT_INPUT_SIZE  # (width, height)
        n_out = len(self._det.get_outputs())
        if n_out not in scrfd.LAYOUTS:
            raise ConfigError(f"{self.detector_path} has {n_out} outputs; SCRFD detectors have "
                              "6, 9, 10 or 15")

        rec_in, rec_out = self._rec.get_inputs()[0], self._rec.get_outputs()
        if len(rec_out) != 1:
            raise ConfigError(f"{self.recogniser_path} has {len(rec_out)} outputs; a recogniser has one")
        self._rec_input, self._rec_output = rec_in.name, rec_out[0].name
        self.crop_size = _fixed(rec_in.shape[2]) or arcface.ARCFACE_SIZE
        self.input_mean, self.input_std = arcface.input_normalisation(self.recogniser_path)
        dim = _fixed(rec_out[0].shape[-1])
        if dim is None:  # symbolic output shape: ask the model once
            blank = np.zeros((self.crop_size, self.crop_size, 3), np.uint8)
            dim = int(self._raw_embedding(blank).size)
        self.embedding_dim = dim
        self.model_id = (f"onnx:{self.recogniser_path.name}:"
                         f"{file_sha1(self.recogniser_path)[:MODEL_HASH_CHARS]}")
        log.info("ONNX face backend on %s: detector %s (%dx%d input), recogniser %s (%d-D, model %s)",
                 self.provider, self.detector_path.name, self.input_size[0], self.input_size[1],
                 self.recogniser_path.name, self.embedding_dim, self.model_id)

    @classmethod
    def from_folder(cls, model_dir: Path | str, *, provider: str = "auto", **kwargs) -> "OnnxBackend":
        pack = find_pack(model_dir)
        return cls(pack.detector, pack.recogniser, provider=provider, **kwargs)

    @classmethod
    def from_settings(cls, settings) -> "OnnxBackend":
        if settings.onnx_model_dir is None:
            raise ConfigError("LOOKALIKE_FACE_BACKEND=onnx needs LOOKALIKE_ONNX_MODEL_DIR: the folder "
                              "of an insightface-style pack (det_*.onnx + w600k_*.onnx, as in buffalo_l)")
        return cls.from_folder(settings.onnx_model_dir, provider=settings.onnx_provider)

    def _provider_in_use(self, asked: str, providers: list[str]) -> str:
        """The provider both sessions really run on; CUDA that failed to start is an error
        when asked for by name (onnxruntime itself would quietly fall back to CPU)."""
        used = [s.get_providers()[0] for s in (self._det, self._rec)]
        if CUDA in providers and any(u != CUDA for u in used):
            if asked == "cuda":
                raise ConfigError("LOOKALIKE_ONNX_PROVIDER=cuda, but onnxruntime could not start CUDA "
                                  "(no GPU visible, or a CUDA/cuDNN library is missing): set "
                                  "LOOKALIKE_ONNX_PROVIDER to auto or cpu to run on the CPU")
            log.warning("onnxruntime offers CUDA but could not start it; running on the CPU")
            return CPU
        return used[0]

    def describe(self) -> dict:
        return {**super().describe(), "provider": self.provider,
                "detector": self.detector_path.name, "recogniser": self.recogniser_path.name}

    # --- detection ----------------------------------------------------------------------------
    def _run_detector(self, blob: np.ndarray) -> list[np.ndarray]:
        return self._det.run(None, {self._det_input: blob})

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        raw = scrfd.detect(rgb, self._run_detector, self.input_size, threshold=self.det_thresh,
                           nms_threshold=self.nms_thresh)
        h, w = rgb.shape[:2]
        dets = []
        for i, (x1, y1, x2, y2) in enumerate(raw.boxes.tolist()):
            box = Box(min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w),
                      min(max(y2, 0.0), h), float(raw.scores[i]))
            dets.append(Detection(box, None if raw.kps is None else raw.kps[i].copy()))
        return dets

    # --- embedding ----------------------------------------------------------------------------
    def embed(self, rgb: np.ndarray, detection: Detection, landmarks68: np.ndarray) -> np.ndarray:
        """ArcFace embedding of the face, aligned on the detector's 5 key points when the
        detection has them, else on 5 points taken from the 68 landmarks."""
        kps = detection.keypoints5
        if kps is None:
            kps = arcface.keypoints5_from_68(landmarks68)
        try:
            crop, _ = arcface.norm_crop(rgb, kps, self.crop_size)
        except ValueError:
            raise NoFace("the face's key points could not be aligned") from None
        return self.embed_aligned(crop)

    def embed_aligned(self, crop: np.ndarray) -> np.ndarray:
        """Unit float32 (D,) embedding of an already aligned (S, S, 3) RGB recogniser crop."""
        vec = self._raw_embedding(crop).astype(np.float32)
        return vec / max(float(np.linalg.norm(vec)), 1e-12)

    def _raw_embedding(self, crop: np.ndarray) -> np.ndarray:
        blob = arcface.to_blob(crop, self.input_mean, self.input_std)
        return np.asarray(self._rec.run([self._rec_output], {self._rec_input: blob})[0]).reshape(-1)
