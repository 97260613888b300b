"""Presigned S3 links: a polled job reuses links signed moments ago, and they stay valid.

Signing is local (no request reaches the endpoint), so no S3 server is needed here; the
service tests download real links from a real one.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from lookalike import storage
from lookalike.storage import S3Store


def _store() -> S3Store:
    return S3Store("links-test", endpoint_url="http://127.0.0.1:9", access_key="k",
                   secret_key="s", create_bucket=False)


def _query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_link_is_reused_within_the_window_and_signed_anew_after(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(storage.time, "monotonic", lambda: clock[0])
    store = _store()
    first = store.url("jobs/a/media/morph-good.mp4", 3600, filename="morph-good.mp4")
    q = _query(first)
    assert q["X-Amz-Expires"] == "3600" and "X-Amz-Signature" in q
    assert q["response-content-disposition"] == 'inline; filename="morph-good.mp4"'

    clock[0] += S3Store.LINK_REUSE_S - 1
    assert store.url("jobs/a/media/morph-good.mp4", 3600, filename="morph-good.mp4") == first
    # another object, file name or lifetime is another link
    assert store.url("jobs/b/media/morph-good.mp4", 3600, filename="morph-good.mp4") != first
    assert store.url("jobs/a/media/morph-good.mp4", 3600) != first
    assert _query(store.url("jobs/a/media/morph-good.mp4", 600, filename="morph-good.mp4"))["X-Amz-Expires"] == "600"

    clock[0] += 2  # past the window: signed again
    monkeypatch.setattr(store._presigner, "generate_presigned_url", lambda *a, **k: "signed-again")
    assert store.url("jobs/a/media/morph-good.mp4", 3600, filename="morph-good.mp4") == "signed-again"


def test_short_lived_links_are_reused_for_a_tenth_of_their_life_at_most(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(storage.time, "monotonic", lambda: clock[0])
    store = _store()
    first = store.url("jobs/a/aligned.jpg", 100)
    clock[0] = 9.0
    assert store.url("jobs/a/aligned.jpg", 100) == first
    clock[0] = 10.5
    monkeypatch.setattr(store._presigner, "generate_presigned_url", lambda *a, **k: "signed-again")
    assert store.url("jobs/a/aligned.jpg", 100) == "signed-again"


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(S3Store, "_LINKS_KEPT", 3)
    store = _store()
    for i in range(10):
        store.url(f"jobs/{i}/aligned.jpg", 3600)
    assert len(store._links) == 3
