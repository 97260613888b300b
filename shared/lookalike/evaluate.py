"""``lookalike eval DIR``: how well the face model identifies people on a folder-per-person set.

One photo per person (the first by name that shows a single face) goes into a gallery; every other photo probes it.
Reported: rank-1 and rank-5 identification rates, the similarity distributions of same-person
and different-person pairs (over all pairs of usable photos), the verification rates at the
0.5 similarity threshold, and the photos that failed. Operators use it to compare face models
and to pick thresholds on their own photos.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from lookalike.config import Settings, get_settings
from lookalike.faces import get_backend
from lookalike.gallery.importer import analyse_photos, scan_folder
from lookalike.gallery.index import GalleryIndex
from lookalike.gallery.similarity import similarity_from_inner
from lookalike.gallery.store import Gallery, GalleryPhoto, Person, display_name


@dataclass
class ProbeResult:
    source: str
    person: str
    rank: int | None  # 1-based rank of the true person among gallery people; None if absent
    top: list[tuple[str, float]]  # (person, similarity) of the first few answers
    faces_seen: int = 1  # several: the probe photo is ambiguous (largest face used)


@dataclass
class EvalReport:
    model: str
    people: int
    gallery_photos: int
    probes: list[ProbeResult] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    same: np.ndarray = field(default_factory=lambda: np.zeros(0))
    different: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def rank_rate(self, k: int) -> float:
        if not self.probes:
            return 0.0
        return sum(1 for p in self.probes if p.rank is not None and p.rank <= k) / len(self.probes)

    def to_dict(self) -> dict:
        def dist(a: np.ndarray) -> dict:
            if len(a) == 0:
                return {"pairs": 0}
            q = np.percentile(a, [5, 25, 50, 75, 95])
            return {"pairs": int(len(a)), "mean": round(float(a.mean()), 4),
                    "std": round(float(a.std()), 4),
                    "p5": round(float(q[0]), 4), "p25": round(float(q[1]), 4),
                    "median": round(float(q[2]), 4), "p75": round(float(q[3]), 4),
                    "p95": round(float(q[4]), 4)}

        return {
            "model": self.model,
            "people": self.people,
            "gallery_photos": self.gallery_photos,
            "probes": len(self.probes),
            "rank1": round(self.rank_rate(1), 4),
            "rank5": round(self.rank_rate(5), 4),
            "same_person_similarity": dist(self.same),
            "different_person_similarity": dist(self.different),
            "at_threshold_0.5": {
                "true_accept_rate": round(float((self.same >= 0.5).mean()), 4) if len(self.same) else None,
                "false_accept_rate": round(float((self.different >= 0.5).mean()), 4) if len(self.different) else None,
            },
            "misidentified": [{"photo": p.source, "person": p.person, "rank": p.rank,
                               "answer": p.top[0][0] if p.top else None,
                               "faces_seen": p.faces_seen}
                              for p in self.probes if p.rank != 1],
            "failed": self.failed,
        }


def evaluate_folder(source: Path, *, settings: Settings | None = None, workers: int | None = None,
                    progress: Callable[[Iterable, int], Iterable] | None = None) -> EvalReport:
    settings = settings or get_settings()
    backend = get_backend(settings.face_backend)
    folders = scan_folder(Path(source))
    items = [(pid, f) for pid, files in folders.items() for f in files]
    results = analyse_photos([str(f) for _, f in items], workers if workers is not None else 2)
    if progress is not None:
        results = progress(results, len(items))

    report = EvalReport(model=backend.model_id, people=0, gallery_photos=0)
    ok: list[tuple[str, str, np.ndarray, int]] = []  # person, source, embedding, faces seen
    for (pid, f), res in zip(items, results):
        rel = f"{pid}/{f.name}"
        if "error" in res:
            report.failed.append({"photo": rel, "code": res["error"], "message": res["message"]})
        else:
            ok.append((pid, rel, res["embedding"], res["faces_seen"]))

    # gallery: each person's first unambiguous photo (one face seen); probes: the rest
    gallery = Gallery(root=Path(source), model=backend.model_id)
    gallery_rows, probes = [], []
    for pid, group in itertools.groupby(ok, key=lambda t: t[0]):
        group = list(group)
        ref = next((g for g in group if g[3] == 1), group[0])
        gallery.people[pid] = Person(id=pid, name=display_name(pid))
        gallery.photos.append(GalleryPhoto(person_id=pid, source=ref[1], sha1="", crop=""))
        gallery_rows.append(ref[2])
        probes.extend(g for g in group if g is not ref)
    report.people = len(gallery.people)
    report.gallery_photos = len(gallery.photos)
    if not gallery_rows:
        return report
    gallery.embeddings = np.stack(gallery_rows).astype(np.float32)
    gallery.landmarks = np.zeros((len(gallery_rows), 68, 2), np.float32)
    index = GalleryIndex(gallery, backend.same_person_distance)
    for pid, rel, emb, seen in probes:
        result = index.search(emb, k=len(gallery.people))
        ranked = [m.person_id for m in result.matches]
        rank = ranked.index(pid) + 1 if pid in ranked else None
        report.probes.append(ProbeResult(rel, pid, rank,
                                         [(m.person_id, round(m.similarity, 3)) for m in result.matches[:3]],
                                         faces_seen=seen))

    # pair distributions over every usable photo
    emb = np.stack([t[2] for t in ok]).astype(np.float32)
    labels = np.array([t[0] for t in ok])
    sims = similarity_from_inner(emb @ emb.T, backend.same_person_distance)
    iu = np.triu_indices(len(ok), k=1)
    same_mask = labels[iu[0]] == labels[iu[1]]
    report.same = sims[iu][same_mask]
    report.different = sims[iu][~same_mask]
    return report
