"""Storing inverted latents: per job in the object store, per celebrity in a gallery cache.

A stored latent is one ``.npz`` (no pickle): ``w_plus`` [n_latent, style_dim] float32, the
optimised noise maps when there are any (``noise_0`` ...), and a small JSON ``meta`` (which
checkpoint, which settings).  Celebrity latents are keyed by the checkpoint's fingerprint, the
aligned image's bytes and the inversion settings, so a new checkpoint or new settings never
reuse a stale latent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class StoredLatent:
    w_plus: np.ndarray                                  # [n_latent, style_dim] float32
    noises: list[np.ndarray] | None = None              # [1, 1, r, r] each, when optimised
    meta: dict = field(default_factory=dict)

    def noise_tensors(self) -> list[torch.Tensor] | None:
        return None if self.noises is None else [torch.from_numpy(n) for n in self.noises]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def latent_to_bytes(w_plus, noises: Sequence | None = None, meta: Mapping | None = None) -> bytes:
    """Serialise a latent (tensor or array) and optional noise maps to ``.npz`` bytes."""
    arrays = {"w_plus": _np(w_plus), "meta": np.array(json.dumps(dict(meta or {}), sort_keys=True))}
    for i, n in enumerate(noises or []):
        arrays[f"noise_{i}"] = _np(n)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def latent_from_bytes(data: bytes) -> StoredLatent:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        noise_keys = sorted((k for k in z.files if k.startswith("noise_")), key=lambda k: int(k[6:]))
        return StoredLatent(
            w_plus=z["w_plus"].astype(np.float32),
            noises=[z[k].astype(np.float32) for k in noise_keys] or None,
            meta=json.loads(str(z["meta"])) if "meta" in z.files else {})


def file_fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file (first 16 hex digits): names the checkpoint latents were made with."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def latent_cache_key(checkpoint_fingerprint: str, image: np.ndarray, params: Mapping) -> str:
    """Key for a celebrity latent: checkpoint, aligned image (uint8 H x W x 3) and inversion settings."""
    h = hashlib.sha256()
    h.update(checkpoint_fingerprint.encode())
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    h.update(json.dumps(dict(params), sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


class LatentCache:
    """A folder of ``<key>.npz`` latents; writes are atomic, so concurrent importers are safe."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def get(self, key: str) -> StoredLatent | None:
        try:
            return latent_from_bytes(self.path(key).read_bytes())
        except FileNotFoundError:
            return None

    def put(self, key: str, w_plus, noises: Sequence | None = None, meta: Mapping | None = None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(latent_to_bytes(w_plus, noises, meta))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
