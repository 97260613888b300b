"""The small interface a face model must offer, and the process-wide choice of one.

A backend detects faces and turns a chosen face into an identity embedding; everything else
(choosing the face, 68 landmarks, alignment) is shared code in ``lookalike.faces.analyze``, so
a new backend (ONNX packs, say) plugs in here without touching callers.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

import numpy as np

from lookalike.errors import ConfigError
from lookalike.faces.types import Detection


class FaceBackend(ABC):
    #: short name used in settings (``LOOKALIKE_FACE_BACKEND``)
    name: str = ""
    #: identifies the embedding space; stored with every gallery embedding
    model_id: str = ""
    embedding_dim: int = 0
    #: Euclidean distance between unit embeddings at which the model calls two faces the
    #: same person; similarity 0.5 is placed there (see ``lookalike.gallery.similarity``).
    same_person_distance: float = 0.6

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an (H, W, 3) uint8 RGB image, boxes in that image's pixels."""

    @abstractmethod
    def embed(self, rgb: np.ndarray, detection: Detection, landmarks68: np.ndarray) -> np.ndarray:
        """Unit-length float32 (D,) identity embedding of one face of ``rgb``."""

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_id, "dim": self.embedding_dim}


_lock = threading.Lock()
_backends: dict[str, FaceBackend] = {}


def get_backend(name: str | None = None) -> FaceBackend:
    """The backend named by the setting, loaded once per process and then shared."""
    from lookalike.config import get_settings

    name = name or get_settings().face_backend
    with _lock:
        if name not in _backends:
            _backends[name] = _load(name)
        return _backends[name]


def check_backend(name: str | None = None) -> str:
    """Load the configured backend once to prove that its files and execution provider work,
    and drop it again; returns its model id. For a process that forks workers afterwards (a
    Celery parent), which must not hand a loaded model to its children. Raises ConfigError."""
    from lookalike.config import get_settings

    return _load(name or get_settings().face_backend).model_id


def _load(name: str) -> FaceBackend:
    from lookalike.config import get_settings

    settings = get_settings()
    if name == "dlib":
        from lookalike.faces.dlib_backend import DlibBackend

        return DlibBackend(detector=settings.dlib_detector)
    if name == "onnx":
        try:
            from lookalike.faces.onnx_backend import OnnxBackend

            return OnnxBackend.from_settings(settings)
        except ImportError as exc:  # onnxruntime is optional (the `onnx` extra)
            raise ConfigError(f"LOOKALIKE_FACE_BACKEND=onnx needs onnxruntime, which cannot be "
                              f"imported here: {exc}",
                              advice="Install the onnx extra (pip install 'lookalike[onnx]'), or "
                                     "onnxruntime-gpu on CUDA machines.") from None
    raise ConfigError(f"unknown face backend {name!r} (LOOKALIKE_FACE_BACKEND: dlib or onnx)")
