"""dlib's model files from the ``face_recognition_models`` package, each loaded once per process."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from lookalike.errors import ConfigError


def model_path(filename: str) -> str:
    """Path of a model file shipped in the ``face_recognition_models`` package.

    Found without importing the package: its ``__init__`` needs ``pkg_resources``, which
    current setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the face_recognition_models package is not installed (pip install face_recognition_models)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise ConfigError(f"dlib model file missing: {path}")
    return str(path)


@lru_cache(maxsize=1)
def hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def cnn_detector():
    import dlib

    return dlib.cnn_face_detection_model_v1(model_path("mmod_human_face_detector.dat"))


@lru_cache(maxsize=1)
def shape_predictor_68():
    import dlib

    return dlib.shape_predictor(model_path("shape_predictor_68_face_landmarks.dat"))


@lru_cache(maxsize=1)
def face_encoder():
    import dlib

    return dlib.face_recognition_model_v1(model_path("dlib_face_recognition_resnet_model_v1.dat"))
