"""The gallery on disk: people, their photos' aligned crops, landmarks and embeddings.

Layout of a gallery folder::

    gallery.json              people, photos (source, hash, crop), model, failures
    embeddings-<gen>.npy      (N, D) float32 unit vectors, row i = photos[i]
    landmarks-<gen>.npy       (N, 68, 2) float32, landmarks in crop pixels
    crops/<person>/<photo>.jpg  aligned FFHQ-style crops

Arrays are written under a new generation name and ``gallery.json`` is replaced last, in one
rename, so a reader never sees a half-written gallery.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lookalike.errors import GalleryError

CATEGORIES = ("good", "bad")
FORMAT_VERSION = 1


@dataclass
class Person:
    id: str
    name: str
    category: str = "good"


@dataclass
class GalleryPhoto:
    person_id: str
    source: str  # path relative to the imported folder, e.g. "Tom_Hanks/2.jpg"
    sha1: str
    crop: str  # path of the aligned crop relative to the gallery folder
    box: list[float] = field(default_factory=list)
    quality: dict = field(default_factory=dict)


@dataclass
class Gallery:
    root: Path
    model: str = ""
    people: dict[str, Person] = field(default_factory=dict)
    photos: list[GalleryPhoto] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 68, 2), np.float32))
    failed: list[dict] = field(default_factory=list)
    generation: int = 0

    # --- reading -----------------------------------------------------------------------
    @classmethod
    def load(cls, root: Path | str) -> "Gallery":
        root = Path(root)
        manifest = root / "gallery.json"
        if not manifest.is_file():
            raise GalleryError(
                f"no gallery at {root}: build one with `lookalike gallery import PHOTO_DIR`")
        try:
            meta = json.loads(manifest.read_text())
            gen = int(meta["generation"])
            embeddings = np.load(root / f"embeddings-{gen}.npy")
            landmarks = np.load(root / f"landmarks-{gen}.npy")
        except (OSError, ValueError, KeyError) as exc:
            raise GalleryError(f"the gallery at {root} is damaged ({exc}); import it again") from None
        people = {p["id"]: Person(**p) for p in meta["people"]}
        photos = [GalleryPhoto(**p) for p in meta["photos"]]
        if len(photos) != len(embeddings) or len(photos) != len(landmarks):
            raise GalleryError(f"the gallery at {root} is inconsistent; import it again")
        return cls(root=root, model=meta["model"], people=people, photos=photos,
                   embeddings=embeddings.astype(np.float32, copy=False), landmarks=landmarks,
                   failed=meta.get("failed", []), generation=gen)

    @classmethod
    def open_or_new(cls, root: Path | str) -> "Gallery":
        root = Path(root)
        return cls.load(root) if (root / "gallery.json").is_file() else cls(root=root)

    def __len__(self) -> int:
        return len(self.photos)

    def crop_path(self, index: int) -> Path:
        return self.root / self.photos[index].crop

    def photos_of(self, person_id: str) -> list[int]:
        return [i for i, p in enumerate(self.photos) if p.person_id == person_id]

    def stats(self) -> dict:
        by_cat = {c: sum(1 for p in self.people.values() if p.category == c) for c in CATEGORIES}
        return {"people": len(self.people), "photos": len(self.photos), "model": self.model,
                "by_category": by_cat, "failed": len(self.failed)}

    # --- writing -----------------------------------------------------------------------
    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        old = self.generation
        gen = old + 1
        dim = self.embeddings.shape[1] if self.embeddings.ndim == 2 and len(self.embeddings) else 0
        emb = self.embeddings if len(self.photos) else np.zeros((0, dim), np.float32)
        np.save(self.root / f"embeddings-{gen}.npy", emb.astype(np.float32))
        np.save(self.root / f"landmarks-{gen}.npy", self.landmarks.astype(np.float32))
        meta = {
            "format": FORMAT_VERSION,
            "generation": gen,
            "model": self.model,
            "people": [asdict(p) for p in sorted(self.people.values(), key=lambda p: p.id)],
            "photos": [asdict(p) for p in self.photos],
            "failed": self.failed,
        }
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".gallery-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh, indent=1)
        os.replace(tmp, self.root / "gallery.json")
        self.generation = gen
        for name in (f"embeddings-{old}.npy", f"landmarks-{old}.npy"):
            (self.root / name).unlink(missing_ok=True)

    def remove_photos(self, indices: set[int]) -> None:
        keep = [i for i in range(len(self.photos)) if i not in indices]
        for i in indices:
            (self.root / self.photos[i].crop).unlink(missing_ok=True)
        self.photos = [self.photos[i] for i in keep]
        self.embeddings = self.embeddings[keep] if len(self.embeddings) else self.embeddings
        self.landmarks = self.landmarks[keep]


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-system-safe version of a person id or photo name (no path tricks)."""
    cleaned = _SAFE.sub("_", text).strip("._")
    return cleaned or "x"


def display_name(person_id: str) -> str:
    return person_id.replace("_", " ").strip()
