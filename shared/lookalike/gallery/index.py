"""Nearest celebrities: faiss over the gallery embeddings, ranked by person, not by photo.

A person scores by their best photo. Small galleries use an exact inner-product index; from
``HNSW_FROM`` photos on, an HNSW graph keeps a query near a millisecond at a million vectors.
``good`` and ``bad`` people get their own indexes so the best of each category is one query.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from lookalike.errors import GalleryError
from lookalike.gallery.similarity import distance_from_inner, similarity_from_inner
from lookalike.gallery.store import CATEGORIES, Gallery

HNSW_FROM = 50_000


@dataclass(frozen=True)
class Match:
    person_id: str
    name: str
    category: str
    similarity: float  # 0–1, see lookalike.gallery.similarity
    distance: float  # Euclidean distance between unit embeddings
    photo: int  # row of the person's best photo in the gallery

    def to_dict(self) -> dict:
        return {"id": self.person_id, "name": self.name, "category": self.category,
                "similarity": round(self.similarity, 4), "distance": round(self.distance, 4)}


@dataclass(frozen=True)
class SearchResult:
    matches: list[Match]
    good_news: Match | None
    bad_news: Match | None

    def to_dict(self) -> dict:
        return {"matches": [m.to_dict() for m in self.matches],
                "good_news": self.good_news.to_dict() if self.good_news else None,
                "bad_news": self.bad_news.to_dict() if self.bad_news else None}


class _SubIndex:
    """One faiss index plus the gallery rows its vectors came from."""

    def __init__(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        self.rows = rows
        dim = vectors.shape[1]
        if len(vectors) >= HNSW_FROM:
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = 128
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.index = index

    def __len__(self) -> int:
        return len(self.rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        inner, idx = self.index.search(queries, min(k, len(self.rows)))
        return inner, np.where(idx >= 0, self.rows[np.maximum(idx, 0)], -1)


class GalleryIndex:
    """Search structure built once from a loaded gallery (rebuild after the gallery changes)."""

    def __init__(self, gallery: Gallery, same_person_distance: float) -> None:
        if len(gallery) == 0:
            raise GalleryError(f"the gallery at {gallery.root} has no photos with a usable face")
        self.gallery = gallery
        self.same_person_distance = same_person_distance
        self.model = gallery.model
        self._person_of_row = np.array([p.person_id for p in gallery.photos], dtype=object)
        emb = gallery.embeddings
        self._all = _SubIndex(emb, np.arange(len(emb)))
        self._by_category: dict[str, _SubIndex] = {}
        for cat in CATEGORIES:
            rows = np.array([i for i, p in enumerate(gallery.photos)
                             if gallery.people[p.person_id].category == cat], dtype=np.int64)
            if len(rows):
                self._by_category[cat] = _SubIndex(emb[rows], rows)

    def _match(self, row: int, inner: float) -> Match:
        person = self.gallery.people[self._person_of_row[row]]
        return Match(person_id=person.id, name=person.name, category=person.category,
                     similarity=float(similarity_from_inner(inner, self.same_person_distance)),
                     distance=float(distance_from_inner(inner)), photo=int(row))

    def _top_people(self, sub: _SubIndex, query: np.ndarray, k: int) -> list[Match]:
        """Best ``k`` distinct people; widens the photo search until k people are found."""
        want = min(len(sub), max(4 * k, 16))
        while True:
            inner, rows = sub.search(query, want)
            best: dict[str, Match] = {}
            for ip, row in zip(inner[0], rows[0]):
                if row < 0:
                    continue
                pid = self._person_of_row[row]
                if pid not in best:  # results come best first: the first hit is the best photo
                    best[pid] = self._match(int(row), float(ip))
                    if len(best) == k:
                        break
            if len(best) >= k or want >= len(sub):
                return list(best.values())
            want = min(len(sub), want * 4)

    def search(self, embedding: np.ndarray, k: int = 5, *, model: str | None = None) -> SearchResult:
        """Top-``k`` celebrities for one unit embedding (D,), plus the best good and bad match."""
        if model is not None and model != self.model:
            raise GalleryError(f"the gallery was built with {self.model}, the query with {model}: "
                               "re-embed the gallery with `lookalike gallery reembed`")
        query = np.ascontiguousarray(np.asarray(embedding, np.float32).reshape(1, -1))
        if query.shape[1] != self.gallery.embeddings.shape[1]:
            raise GalleryError("embedding size does not match the gallery")
        matches = self._top_people(self._all, query, k)
        good = self._best_of("good", query, matches)
        bad = self._best_of("bad", query, matches)
        return SearchResult(matches=matches, good_news=good, bad_news=bad)

    def _best_of(self, category: str, query: np.ndarray, matches: list[Match]) -> Match | None:
        for m in matches:  # usually already in the top-k: no second query needed
            if m.category == category:
                return m
        sub = self._by_category.get(category)
        if sub is None:
            return None
        found = self._top_people(sub, query, 1)
        return found[0] if found else None
