"""All settings of the product in one class, read from ``LOOKALIKE_*`` environment variables.

Validated when first read, so a wrong value stops a command at start-up with a message that
names the variable, instead of failing in the middle of a job.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, computed_field, field_validator
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

    # --- StyleGAN renderer (LOOKALIKE_RENDERER=stylegan; files from the operator) -------
    # Checked at start-up by lookalike.stylegan.stage.check_renderer; see docs/STYLEGAN.md.
    stylegan_checkpoint: Path | None = Field(None, description="StyleGAN2 generator checkpoint "
                                             "(rosinality layout: g_ema + latent_avg).")
    stylegan_vgg16: Path | None = Field(None, description="torchvision VGG16 weights (.pth) for "
                                        "the perceptual inversion loss.")
    stylegan_smile_direction: Path | None = Field(None, description="Smile direction .npy, "
                                                  "[n_latent, style_dim] or [style_dim].")
    stylegan_encoder: Path | None = Field(None, description="Optional encoder (.pt2 or "
                                          "TorchScript) whose output starts the inversion.")
    stylegan_device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                                 description="auto = CUDA when present.")
    stylegan_steps: int = Field(300, ge=1, le=10_000, description="Inversion optimiser steps.")
    stylegan_lr: float = Field(0.1, gt=0, le=10, description="Inversion peak learning rate.")
    stylegan_lr_rampup: float = Field(0.05, ge=0, le=1)
    stylegan_lr_rampdown: float = Field(0.25, ge=0, le=1)
    stylegan_batch_size: int = Field(4, ge=1, le=64, description="Faces inverted together.")
    stylegan_frame_batch: int = Field(8, ge=1, le=256, description="Frames generated per call.")
    stylegan_perceptual_weight: float = Field(1.0, ge=0)
    stylegan_pixel_weight: float = Field(0.1, ge=0)
    stylegan_face_mask: bool = Field(False, description="Restrict the inversion loss to an "
                                     "ellipse around the face.")
    stylegan_optimize_noise: bool = Field(False, description="Also optimise the noise maps "
                                          "(regularised).")
    stylegan_noise_reg_weight: float = Field(1e5, ge=0)
    stylegan_smile_strength: float = Field(3.0, ge=-50, le=50)
    stylegan_photo_fade: float = Field(0.25, ge=0, le=1, description="Part of a clip over which "
                                       "the real photo fades into the generator's image.")
    stylegan_latent_cache_dir: Path | None = Field(None, description="Celebrity latents "
                                                   "(default data_dir/cache/stylegan-latents).")

    @field_validator("stylegan_checkpoint", "stylegan_vgg16", "stylegan_smile_direction",
                     "stylegan_encoder", "stylegan_latent_cache_dir", "onnx_model_dir", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value):
        # `LOOKALIKE_STYLEGAN_VGG16=` means "not set", not the current folder
        return None if isinstance(value, str) and not value.strip() else value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gallery_dir(self) -> Path:
        return self.data_dir / "gallery"

    # === service: API gateway, workers, job store, object store, notifications ==========
    # `lookalike serve` (embedded) runs on SQLite + a local folder + in-process stages with no
    # servers; `lookalike api` / `lookalike worker` (distributed) use PostgreSQL, S3 and
    # Celery over Redis. Checked at start-up by ``lookalike.service_config.check_service``.
    database_url: str | None = Field(
        None, description="Job store (SQLAlchemy URL), e.g. postgresql+psycopg://user@host/db. "
                          "Default: SQLite file data_dir/jobs.db.")
    redis_url: str | None = Field(
        None, description="Redis for the Celery broker, rate limits, metrics; e.g. "
                          "redis://127.0.0.1:6379/0. Needed by `lookalike api` and workers.")
    broker_url: str | None = Field(None, description="Celery broker if not redis_url.")
    storage: Literal["local", "s3"] = Field(
        "local", description="Object store for photos, crops, embeddings, videos.")
    storage_dir: Path | None = Field(None, description="Folder of the local object store "
                                                       "(default data_dir/objects).")
    s3_endpoint_url: str | None = Field(None, description="S3 API endpoint (MinIO, SeaweedFS); "
                                                          "unset for AWS.")
    s3_public_url: str | None = Field(None, description="Endpoint clients reach for presigned "
                                                        "links, if not s3_endpoint_url.")
    s3_bucket: str = Field("lookalike", min_length=3, max_length=63)
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    api_host: str = Field("127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(8000, ge=1, le=65535)
    public_url: str | None = Field(None, description="Base URL of the API in links sent out "
                                                     "(e-mail, webhooks); default http://api_host:api_port.")
    secret_key: SecretStr | None = Field(
        None, description="Signs file and result links and derives webhook secrets; default: "
                          "generated once into data_dir/secret.key.")
    auth: Literal["auto", "keys", "off"] = Field(
        "auto", description="API keys: auto = required except `lookalike serve` on loopback.")
    rate_limit_per_minute: int = Field(600, ge=1, description="Requests per API key per minute "
                                                              "(a key may carry its own).")
    # The visitors' web page (GET /) submits without an API key: each job is then reachable only
    # through the signed links handed to the browser that uploaded it (see services/api/routes/web.py).
    visitor_uploads: bool = Field(True, description="Let the web page at / accept photos without "
                                                    "an API key (rate-limited per client address).")
    visitor_rate_limit_per_minute: int = Field(10, ge=1, description="Photo uploads per client "
                                                                      "address per minute from the web page.")
    link_ttl_s: int = Field(3600, ge=10, le=7 * 86400, description="Lifetime of artifact links.")
    retention_hours: float = Field(24.0, gt=0, description="Jobs, photos, embeddings and media "
                                                           "are deleted this long after upload.")
    encoder_time_limit_s: int = Field(120, ge=5)
    matcher_time_limit_s: int = Field(60, ge=5)
    renderer_time_limit_s: int = Field(600, ge=5)
    notify_time_limit_s: int = Field(60, ge=5)
    stall_grace_s: float = Field(30.0, ge=0, description="A stage that has not moved within its "
                                                          "time limit plus this is re-enqueued.")
    reconcile_every_s: float = Field(15.0, gt=0)
    reconcile_max_tries: int = Field(3, ge=1, description="Re-enqueues of one stage before the "
                                                           "job fails with `internal`.")
    retention_every_s: float = Field(300.0, gt=0)
    webhook_allow: str = Field("", description="Comma-separated hosts, IPs or CIDRs that webhooks "
                                               "may reach although private/loopback.")
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_retry_first_s: float = Field(5.0, gt=0, description="First retry delay; doubles.")
    webhook_retry_max_s: float = Field(600.0, gt=0, description="Longest delay between tries.")
    webhook_give_up_s: float = Field(6 * 3600.0, gt=0, description="Stop retrying after this "
                                                                   "long (at least an hour in production).")
    smtp_host: str | None = Field(None, description="Send result e-mails through this SMTP server.")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "Lookalike <lookalike@localhost>"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["none", "starttls", "ssl"] = "none"
    worker_concurrency: int = Field(1, ge=1, le=64, description="Processes per `lookalike worker`.")

    @property
    def webhook_allow_list(self) -> list[str]:
        return [item.strip() for item in self.webhook_allow.split(",") if item.strip()]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'jobs.db'}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "objects"

    @property
    def resolved_broker_url(self) -> str | None:
        return self.broker_url or self.redis_url

    @property
    def resolved_public_url(self) -> str:
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::") else self.api_host
        return (self.public_url or f"http://{host}:{self.api_port}").rstrip("/")


#: LOOKALIKE_ variables that are read elsewhere, not settings: the log level, the tests'
#: fixture folder, docker compose's published port (LOOKALIKE__* are internal)
NOT_SETTINGS = ("LOOKALIKE_LOG_LEVEL", "LOOKALIKE_FIXTURES", "LOOKALIKE_HTTP_PORT")


def unknown_variables(environ: dict[str, str]) -> list[str]:
    """LOOKALIKE_ variables that are no setting: most likely typos, which would be ignored."""
    known = {"LOOKALIKE_" + name.upper() for name in Settings.model_fields}
    return sorted(k for k in environ if k.startswith("LOOKALIKE_") and k not in known
                  and k not in NOT_SETTINGS and not k.startswith(("LOOKALIKE__", "LOOKALIKE_TEST_")))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; raises ConfigError naming the bad variable. A variable with
    the prefix that is no setting (a typo) is named in a warning."""
    import difflib
    import logging

    for name in unknown_variables(dict(os.environ)):
        close = difflib.get_close_matches(name, ["LOOKALIKE_" + f.upper() for f in Settings.model_fields], 1)
        logging.getLogger("lookalike.config").warning(
            "%s is not a Lookalike setting and is ignored%s", name,
            f" (did you mean {close[0]}?)" if close else "")
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "LOOKALIKE_" + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
