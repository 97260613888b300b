"""Where the service reads and curates the gallery, in either way of running.

    LocalGallerySource(dir)         embedded: the gallery folder itself (settings.gallery_dir)
    StoreGallerySource(store, db)   distributed: snapshots in the object store under
                                    ``gallery/<generation>/`` (+ crops under ``gallery/crops/``),
                                    the current generation in the job store

A matcher asks ``index()`` on every job: a cheap check of the generation (a ``stat`` or one
indexed row) tells it whether to reload, so operator edits reach running matchers without a
restart. Edits are serialized (a row lock in PostgreSQL, a process lock for a folder).
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, TypeVar

from lookalike.config import Settings
from lookalike.errors import GalleryError, InputError
from lookalike.gallery.index import GalleryIndex
from lookalike.gallery.store import CATEGORIES, Gallery, GalleryPhoto, Person, display_name, safe_name
from lookalike.notify import InvalidOption

log = logging.getLogger(__name__)
T = TypeVar("T")


class GallerySource(ABC):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._cached: tuple[object, GalleryIndex] | None = None
        self._missing: tuple[float, str | None] | None = None  # (checked at, answer)

    @abstractmethod
    def version(self) -> object:
        """Changes whenever the gallery changes (cheap to ask)."""

    @abstractmethod
    def _load(self) -> Gallery: ...

    @abstractmethod
    def crop_bytes(self, gallery: Gallery, row: int) -> bytes: ...

    @abstractmethod
    def edit(self, change: Callable[[Gallery], T]) -> T:
        """Run ``change`` on the current gallery and publish the result atomically."""

    def index(self) -> GalleryIndex:
        """The search index of the current gallery, rebuilt only when it changed."""
        from lookalike.faces import get_backend

        version = self.version()
        with self._lock:
            if self._cached is not None and self._cached[0] == version:
                return self._cached[1]
            gallery = self._load()
            index = GalleryIndex(gallery, get_backend(self.settings.face_backend).same_person_distance)
            self._cached = (version, index)
            log.info("gallery loaded: %d people, %d photos (version %s)",
                     len(gallery.people), len(gallery), version)
            return index

    def snapshot(self) -> Gallery:
        return self._load()

    #: how long the answer of ``missing`` is reused (it is asked on every upload)
    MISSING_CHECK_S = 5.0

    def missing(self) -> str | None:
        """Why no photo can be matched now (no gallery yet), or None when there is a gallery.
        Cheap: the version check, answered again from memory for a few seconds."""
        now = time.monotonic()
        cached = self._missing
        if cached is not None and now - cached[0] < self.MISSING_CHECK_S:
            return cached[1]
        reason = self._missing_reason()
        self._missing = (now, reason)
        return reason

    @abstractmethod
    def _missing_reason(self) -> str | None: ...


class LocalGallerySource(GallerySource):
    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        super().__init__(settings)
        self.root = Path(root or settings.gallery_dir)
        self._edit_lock = threading.Lock()

    def version(self) -> object:
        try:
            st = (self.root / "gallery.json").stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> Gallery:
        return Gallery.load(self.root)

    def _missing_reason(self) -> str | None:
        if self.version() is None:
            return (f"there is no gallery at {self.root} yet: build one with "
                    "`lookalike gallery import PHOTOS/`")
        return None

    def crop_bytes(self, gallery: Gallery, row: int) -> bytes:
        return gallery.crop_path(row).read_bytes()

    def edit(self, change: Callable[[Gallery], T]) -> T:
        with self._edit_lock:
            gallery = Gallery.open_or_new(self.root)
            result = change(gallery)
            gallery.save()
            return result


class StoreGallerySource(GallerySource):
    """Gallery snapshots in the object store; the generation number lives in the job store."""

    PREFIX = "gallery/"

    def __init__(self, settings: Settings, store, db, cache_dir: Path | None = None) -> None:
        super().__init__(settings)
        self.store = store
        self.db = db
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="lookalike-gallery-"))
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def version(self) -> object:
        from lookalike.jobstore import repo

        with self.db.session() as s:
            return repo.gallery_generation(s)

    def _missing_reason(self) -> str | None:
        if int(self.version() or 0) <= 0:
            return ("no gallery has been published yet: run `lookalike gallery publish` or add "
                    "people through the gallery API")
        return None

    def _snapshot_prefix(self, generation: int) -> str:
        return f"{self.PREFIX}{generation}/"

    def _download(self, generation: int, root: Path) -> Gallery:
        if generation <= 0:
            raise GalleryError("no gallery has been published yet: run `lookalike gallery publish` "
                               "or add people through the API")
        root.mkdir(parents=True, exist_ok=True)
        prefix = self._snapshot_prefix(generation)
        keys = self.store.list(prefix)
        if not keys:
            raise GalleryError(f"gallery generation {generation} is missing from the object store")
        for key in keys:
            (root / key[len(prefix):]).write_bytes(self.store.get(key))
        return Gallery.load(root)

    def _load(self) -> Gallery:
        generation = self.version()
        target = self.cache_dir / f"gen-{generation}"
        if (target / "gallery.json").is_file():
            return Gallery.load(target)
        tmp = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".dl-"))
        try:
            self._download(int(generation), tmp)
            try:
                tmp.rename(target)
            except OSError:  # another thread got there first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in self.cache_dir.glob("gen-*"):  # keep the cache small
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return Gallery.load(target)

    def crop_key(self, gallery: Gallery, row: int) -> str:
        return self.PREFIX + gallery.photos[row].crop

    def crop_bytes(self, gallery: Gallery, row: int) -> bytes:
        return self.store.get(self.crop_key(gallery, row))

    def edit(self, change: Callable[[Gallery], T]) -> T:
        return self._publish(lambda gallery, _root: change(gallery))

    def publish_folder(self, folder: Path) -> int:
        """Make a local gallery folder (``lookalike gallery import``) the shared gallery."""
        source = Gallery.load(folder)

        def replace(gallery: Gallery, root: Path) -> int:
            for photo in source.photos:
                dst = root / photo.crop
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source.root / photo.crop, dst)
            gallery.model = source.model
            gallery.people = dict(source.people)
            gallery.photos = list(source.photos)
            gallery.embeddings = source.embeddings.copy()
            gallery.landmarks = source.landmarks.copy()
            gallery.failed = list(source.failed)
            return len(source.photos)

        return self._publish(replace)

    def _publish(self, change: Callable[[Gallery, Path], T]) -> T:
        from lookalike.jobstore import repo

        work = Path(tempfile.mkdtemp(prefix="lookalike-gallery-edit-"))
        try:
            with self.db.session() as s:
                generation = repo.gallery_generation(s, for_update=True)
                gallery = self._download(generation, work) if generation > 0 else Gallery(root=work)
                before = {p.crop for p in gallery.photos}
                result = change(gallery, work)
                gallery.save()
                after = {p.crop for p in gallery.photos}
                for crop in sorted(after - before):
                    self.store.put(self.PREFIX + crop, (work / crop).read_bytes(), "image/jpeg")
                new_generation = generation + 1
                prefix = self._snapshot_prefix(new_generation)
                for name in ("gallery.json", f"embeddings-{gallery.generation}.npy",
                             f"landmarks-{gallery.generation}.npy"):
                    self.store.put(prefix + name, (work / name).read_bytes())
                repo.set_gallery_generation(s, new_generation)
            # committed: drop what no generation needs any more (keep the previous snapshot
            # for matchers that are loading it right now)
            gone = [self.PREFIX + c for c in sorted(before - after)]
            if gone:
                self.store.delete(gone)
            if generation > 1:
                self.store.delete_prefix(self._snapshot_prefix(generation - 1))
            return result
        finally:
            shutil.rmtree(work, ignore_errors=True)


# --- edits (the same for both sources) --------------------------------------------------------

def add_person(gallery: Gallery, person_id: str, name: str | None, category: str,
               photos: list[tuple[str, bytes]], settings: Settings) -> dict:
    """Analyse ``photos`` and add them to ``person_id`` (created if new). Returns a report."""
    import hashlib

    import numpy as np
    from PIL import Image

    from lookalike.stages import encode_image

    if category not in CATEGORIES:
        raise InvalidOption(f"category must be one of {', '.join(CATEGORIES)}")
    pid = safe_name(person_id)
    if pid != person_id or len(pid) > 100:
        raise InvalidOption("person id may only hold letters, digits, '.', '_' and '-' "
                            "(at most 100 characters)")
    added, failed = [], []
    new_emb, new_lm = [], []
    for filename, data in photos:
        sha = hashlib.sha1(data).hexdigest()
        try:
            face = encode_image(data, settings=settings)
        except InputError as exc:
            failed.append({"photo": filename, "code": exc.code, "message": exc.message})
            continue
        if gallery.model and face.model != gallery.model:
            raise GalleryError(f"the gallery holds {gallery.model} embeddings, this server makes "
                               f"{face.model}")
        gallery.model = face.model
        stem = safe_name(Path(filename).stem)[:60]
        crop_rel = f"crops/{pid}/{stem}-{sha[:8]}.jpg"
        path = gallery.root / crop_rel
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(face.aligned).save(buf, "JPEG", quality=92)
        path.write_bytes(buf.getvalue())
        gallery.photos.append(GalleryPhoto(person_id=pid, source=f"api/{pid}/{stem}", sha1=sha,
                                           crop=crop_rel, box=face.box.to_list(),
                                           quality=face.quality))
        new_emb.append(face.embedding)
        new_lm.append(face.aligned_landmarks)
        added.append(filename)
    if not added and pid not in gallery.people:
        raise InvalidOption("none of the photos has a usable face: "
                            + "; ".join(f"{f['photo']}: {f['code']}" for f in failed))
    if new_emb:
        old = gallery.embeddings if len(gallery.embeddings) else np.zeros((0, len(new_emb[0])), np.float32)
        gallery.embeddings = np.concatenate([old, np.stack(new_emb)]).astype(np.float32)
        gallery.landmarks = np.concatenate([gallery.landmarks.reshape(-1, 68, 2),
                                            np.stack(new_lm)]).astype(np.float32)
    person = gallery.people.get(pid) or Person(id=pid, name=name or display_name(pid))
    if name:
        person.name = name
    person.category = category
    gallery.people[pid] = person
    return {"id": pid, "added": added, "failed": failed,
            "photos": len(gallery.photos_of(pid))}


def set_person(gallery: Gallery, person_id: str, *, category: str | None = None,
               name: str | None = None) -> dict:
    if person_id not in gallery.people:
        raise KeyError(person_id)
    if category is not None:
        if category not in CATEGORIES:
            raise InvalidOption(f"category must be one of {', '.join(CATEGORIES)}")
        gallery.people[person_id].category = category
    if name:
        gallery.people[person_id].name = name
    return person_row(gallery, person_id)


def remove_person(gallery: Gallery, person_id: str) -> None:
    if person_id not in gallery.people:
        raise KeyError(person_id)
    gallery.remove_photos(set(gallery.photos_of(person_id)))
    del gallery.people[person_id]


def person_row(gallery: Gallery, person_id: str) -> dict:
    p = gallery.people[person_id]
    return {"id": p.id, "name": p.name, "category": p.category,
            "photos": len(gallery.photos_of(p.id))}
