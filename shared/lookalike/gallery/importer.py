"""``lookalike gallery import DIR``: one sub-folder per person, photos inside.

An optional CSV (``people.csv`` in DIR, or ``--metadata FILE``) with the header
``id,name,category`` gives the display name and the category (``good`` or ``bad``) of each
person folder; people without a row are ``good`` and named after their folder.

Re-importing is incremental: a photo whose bytes (SHA-1) and face model are unchanged is kept
as it is; new or changed photos are analysed; photos that disappeared from a person's folder
are dropped. Photos without a usable face are listed in the report, never fatal.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from lookalike.config import Settings, get_settings
from lookalike.errors import ConfigError, GalleryError, LookalikeError
from lookalike.gallery.store import CATEGORIES, Gallery, GalleryPhoto, Person, display_name, safe_name

IGNORED_SUFFIXES = {".csv", ".tsv", ".txt", ".md", ".json", ".db", ".ini"}


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[dict] = field(default_factory=list)
    #: photos with several faces: the largest was used, an operator may want to crop them
    ambiguous: list[str] = field(default_factory=list)
    people: int = 0

    def to_dict(self) -> dict:
        return {"added": self.added, "unchanged": self.unchanged, "removed": self.removed,
                "failed": self.failed, "ambiguous": self.ambiguous, "people": self.people}


def read_metadata(path: Path) -> dict[str, dict]:
    """id → {"name", "category"} from a CSV file; wrong categories are refused by name."""
    rows: dict[str, dict] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "id" not in reader.fieldnames:
                raise ConfigError(f"{path}: the first line must be a header with at least 'id' "
                                  "(columns: id,name,category)")
            for n, row in enumerate(reader, start=2):
                pid = (row.get("id") or "").strip()
                if not pid:
                    continue
                category = (row.get("category") or "good").strip().lower() or "good"
                if category not in CATEGORIES:
                    raise ConfigError(f"{path}:{n}: category {category!r} for {pid!r} must be "
                                      f"one of {', '.join(CATEGORIES)}")
                rows[pid] = {"name": (row.get("name") or "").strip() or display_name(pid),
                             "category": category}
    except OSError as exc:
        raise ConfigError(f"cannot read the metadata file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the metadata file is not UTF-8 text",
                          advice="Save it as 'CSV UTF-8' (id,name,category).") from None
    return rows


def scan_folder(root: Path) -> dict[str, list[Path]]:
    """person id (folder name) → photo files, sorted; hidden files and notes are skipped."""
    if not root.is_dir():
        raise GalleryError(f"{root} is not a folder (expected one sub-folder per person)")
    people: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir()
                       if f.is_file() and not f.name.startswith(".")
                       and f.suffix.lower() not in IGNORED_SUFFIXES)
        people[sub.name] = files
    if not people:
        raise GalleryError(f"{root} has no sub-folders: put each person's photos in a folder "
                           "named after them")
    return people


# --- per-photo work (runs in worker processes for big imports) -------------------------------

def _init_worker() -> None:
    """Load the face models once per worker process (settings come from its environment)."""
    from lookalike.faces import get_backend

    get_backend()


def analyse_photo(path: str) -> dict:
    """Bytes on disk → crop JPEG, landmarks and embedding, or the error code and message."""
    from lookalike.stages import encode_image

    settings = get_settings()
    try:
        data = Path(path).read_bytes()
        face = encode_image(data, settings=settings)
    except LookalikeError as exc:
        return {"error": exc.code, "message": exc.message}
    except OSError as exc:
        return {"error": "unreadable", "message": exc.strerror or str(exc)}
    buf = io.BytesIO()
    Image.fromarray(face.aligned).save(buf, "JPEG", quality=92)
    return {"crop": buf.getvalue(), "landmarks": face.aligned_landmarks,
            "embedding": face.embedding, "box": face.box.to_list(), "quality": face.quality,
            "model": face.model, "faces_seen": face.faces_seen}


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def analyse_photos(paths: list[str], workers: int) -> Iterable[dict]:
    """``analyse_photo`` over many files, in order; in worker processes when it pays."""
    if workers <= 1 or len(paths) < 8:
        from lookalike.faces import get_backend

        get_backend()
        yield from map(analyse_photo, paths)
        return
    import multiprocessing as mp

    # spawn, not fork: dlib and faiss hold thread pools that do not survive a fork.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        yield from pool.map(analyse_photo, paths, chunksize=2)


def import_folder(source: Path, gallery_dir: Path, *, metadata: Path | None = None,
                  settings: Settings | None = None, workers: int | None = None,
                  progress: Callable[[Iterable, int], Iterable] | None = None) -> ImportReport:
    """Bring the gallery at ``gallery_dir`` in line with the photo folder ``source``."""
    from lookalike.faces import get_backend

    settings = settings or get_settings()
    source = Path(source)
    folders = scan_folder(source)
    meta_file = metadata or (source / "people.csv")
    meta = read_metadata(meta_file) if (metadata or meta_file.is_file()) else {}
    unknown = sorted(set(meta) - set(folders))
    if metadata and unknown and len(unknown) == len(meta):
        raise ConfigError(f"{metadata}: none of its ids match a folder in {source}")

    backend = get_backend(settings.face_backend)
    gallery = Gallery.open_or_new(gallery_dir)
    report = ImportReport()
    if gallery.model and gallery.model != backend.model_id and len(gallery):
        # Another face model made these embeddings: nothing can be reused, so every photo is
        # analysed again -- which only this import's folder can do. Photos it does not hold
        # would be lost: then the gallery is re-embedded from its own crops instead.
        here = {f"{pid}/{f.name}" for pid, files in folders.items() for f in files}
        elsewhere = sorted(p.source for p in gallery.photos if p.source not in here)
        if elsewhere:
            raise GalleryError(
                f"the gallery was made with the face model {gallery.model}, and this import "
                f"({backend.model_id}) holds only some of its photos ({len(elsewhere)} others, "
                f"e.g. {elsewhere[0]}): importing would drop them",
                advice="Run `lookalike gallery reembed` first (it re-embeds every photo from the "
                       "gallery's own crops), then import.")
        report.removed += len(gallery)
        gallery.remove_photos(set(range(len(gallery))))
    gallery.model = backend.model_id

    # people and their metadata
    for pid in folders:
        info = meta.get(pid, {})
        person = gallery.people.get(pid) or Person(id=pid, name=display_name(pid))
        person.name = info.get("name", person.name)
        person.category = info.get("category", person.category)
        gallery.people[pid] = person

    # what changed
    existing = {(p.person_id, p.source): (i, p.sha1) for i, p in enumerate(gallery.photos)}
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, str, str, Path]] = []  # person, source, sha1, path
    stale: set[int] = set()
    for pid, files in folders.items():
        for f in files:
            rel = f"{pid}/{f.name}"
            key = (pid, rel)
            seen.add(key)
            sha = _sha1(f)
            if key in existing and existing[key][1] == sha:
                report.unchanged += 1
                continue
            if key in existing:
                stale.add(existing[key][0])
            todo.append((pid, rel, sha, f))
    for key, (i, _) in existing.items():
        if key[0] in folders and key not in seen:
            stale.add(i)
    report.removed += len(stale)
    gallery.remove_photos(stale)
    # people whose folder is empty now disappear; other people (other imports) stay
    gallery.failed = [f for f in gallery.failed if f["person"] not in folders]

    results = analyse_photos([str(t[3]) for t in todo], workers or min(os.cpu_count() or 1, 4))
    if progress is not None:
        results = progress(results, len(todo))
    new_emb, new_lm = [], []
    for (pid, rel, sha, _path), res in zip(todo, results):
        if "error" in res:
            item = {"person": pid, "source": rel, "code": res["error"], "message": res["message"]}
            gallery.failed.append(item)
            report.failed.append(item)
            continue
        crop_rel = f"crops/{safe_name(pid)}/{safe_name(Path(rel).stem)}-{sha[:8]}.jpg"
        crop_path = gallery.root / crop_rel
        crop_path.parent.mkdir(parents=True, exist_ok=True)
        crop_path.write_bytes(res["crop"])
        gallery.photos.append(GalleryPhoto(person_id=pid, source=rel, sha1=sha, crop=crop_rel,
                                           box=res["box"], quality=res["quality"]))
        new_emb.append(res["embedding"])
        new_lm.append(res["landmarks"])
        report.added += 1
        if res["faces_seen"] > 1:
            report.ambiguous.append(rel)
    if new_emb:
        old = gallery.embeddings if len(gallery.embeddings) else np.zeros((0, len(new_emb[0])), np.float32)
        gallery.embeddings = np.concatenate([old, np.stack(new_emb)]).astype(np.float32)
        gallery.landmarks = np.concatenate([gallery.landmarks.reshape(-1, 68, 2), np.stack(new_lm)])
    with_photos = {p.person_id for p in gallery.photos}
    gallery.people = {k: v for k, v in gallery.people.items()
                      if k in with_photos or k not in folders}
    report.people = len(gallery.people)
    gallery.save()
    return report
