"""Celebrities match themselves: one photo per person in a gallery, every other photo probes it."""

from __future__ import annotations

import pytest

from lookalike.evaluate import evaluate_folder


@pytest.fixture(scope="module")
def report(fixtures_dir):
    return evaluate_folder(fixtures_dir / "faces", workers=2)


def test_every_clear_photo_ranks_its_person_first(report):
    clear = [p for p in report.probes if p.faces_seen == 1]
    rate = sum(p.rank == 1 for p in clear) / len(clear)
    overall = report.rank_rate(1)
    print(f"\nrank-1 on {len(clear)} clear photos: {rate:.1%}; on all {len(report.probes)} probes: "
          f"{overall:.1%}; rank-5: {report.rank_rate(5):.1%}")
    assert report.people == 25 and not report.failed
    assert len(clear) >= 70
    missed = [(p.source, p.rank, p.top[:1]) for p in clear if p.rank != 1]
    assert not missed, f"clear photos not matched to their person first: {missed}"
    assert overall >= 0.95


def test_similarity_scale_separates_same_and_different_people(report):
    d = report.to_dict()
    same, diff = d["same_person_similarity"], d["different_person_similarity"]
    print(f"\nsame person median {same['median']}, different people median {diff['median']}")
    assert same["median"] > 0.55
    assert diff["p95"] < 0.5
    assert d["at_threshold_0.5"]["false_accept_rate"] < 0.02
    assert d["at_threshold_0.5"]["true_accept_rate"] > 0.9
