"""All settings of the product in one class, read from ``LOOKALIKE_*`` environment variables.

Validated when first read, so a wrong value stops a command at start-up with a message that
names the variable, instead of failing in the middle of a job.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike.errors import ConfigError


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "lookalike"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir,
                           description="Local data folder: gallery, jobs, objects (embedded mode).")

    # --- upload limits (checked before any pixel is decoded) ----------------------------
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest accepted file.")
    max_image_pixels: int = Field(50_000_000, gt=0,
                                  description="Largest width*height accepted (pixel-bomb guard).")
    background_rgb: tuple[int, int, int] = Field((255, 255, 255),
                                                 description="Colour transparent pixels are flattened onto.")

    # --- face analysis ------------------------------------------------------------------
    face_backend: Literal["dlib", "onnx"] = "dlib"
    dlib_detector: Literal["hog", "cnn"] = "hog"
    detect_max_side: int = Field(1024, ge=128, le=4096,
                                 description="Photos are scaled so their long side is at most this for detection.")
    min_face_px: int = Field(48, ge=8, description="Faces narrower than this (original pixels) are too small.")
    align_size: int = Field(512, ge=64, le=2048, description="Side of the aligned square face crop.")
    onnx_model_dir: Path | None = Field(None, description="Folder of an insightface-style ONNX pack.")
    onnx_provider: Literal["auto", "cpu", "cuda"] = "auto"

    # --- matching -----------------------------------------------------------------------
    top_k: int = Field(5, ge=1, le=100)

    # --- rendering ----------------------------------------------------------------------
    renderer: Literal["classical", "stylegan"] = "classical"
    video_fps: int = Field(25, ge=5, le=60)
    morph_seconds: float = Field(2.0, gt=0.2, le=20)
    hold_seconds: float = Field(0.3, ge=0, le=5, description="Still frames at each end of a morph.")
    video_size: int = Field(512, ge=64, le=2048)
    webp_size: int = Field(256, ge=64, le=1024, description="Side of the animated WebP preview.")
    webp_fps: int = Field(12, ge=1, le=60)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gallery_dir(self) -> Path:
        return self.data_dir / "gallery"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; raises ConfigError naming the bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "LOOKALIKE_" + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
