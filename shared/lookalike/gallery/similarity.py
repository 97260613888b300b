"""What the similarity score means.

Embeddings are unit vectors, so the Euclidean distance ``d`` between two faces follows from
their inner product ``c`` as ``d = sqrt(2 - 2c)``. Each face model states the distance ``t`` at
which it calls two photos the same person (dlib: 0.6, its authors' LFW threshold). We map

    similarity = clip(1 - d / (2 t), 0, 1)

so 1.0 is an identical embedding, **0.5 is exactly the model's same-person threshold**, values
above 0.5 mean the model would take the two photos for the same person, and 0 means the faces
are twice the threshold apart (typical of unrelated people of different sex or ethnicity).
Celebrity look-alikes of a visitor usually land between 0.3 and 0.5. The mapping is linear in
distance, so differences between scores compare like differences between distances.
"""

from __future__ import annotations

import numpy as np


def distance_from_inner(inner: np.ndarray | float) -> np.ndarray:
    return np.sqrt(np.clip(2.0 - 2.0 * np.asarray(inner, dtype=np.float64), 0.0, 4.0))


def similarity_from_distance(distance: np.ndarray | float, same_person_distance: float) -> np.ndarray:
    return np.clip(1.0 - np.asarray(distance, dtype=np.float64) / (2.0 * same_person_distance), 0.0, 1.0)


def similarity_from_inner(inner: np.ndarray | float, same_person_distance: float) -> np.ndarray:
    return similarity_from_distance(distance_from_inner(inner), same_person_distance)
