"""Operator gallery endpoints against both stacks: a person added, re-tagged and removed over
HTTP reaches the running matchers without a restart (the next job sees the change)."""

from __future__ import annotations

import pytest

NEW = "Nicole_Kidman"  # not in the session's small gallery


def _photos(fixtures_dir):
    photos = sorted((fixtures_dir / "faces" / NEW).iterdir())
    assert len(photos) >= 3
    return photos[:-1], photos[-1]   # photos for the gallery, one more to submit


def _people(stack) -> dict:
    with stack.client("admin") as c:
        r = c.get("/v1/gallery/people")
    assert r.status_code == 200, r.text
    return {p["id"]: p for p in r.json()["people"]}


def _match(stack, photo) -> dict:
    r = stack.submit(photo, clips="none", top_k=10)
    assert r.status_code == 202, r.text
    job = stack.wait(r.json()["id"])
    assert job["state"] == "succeeded", job
    return job["result"]


@pytest.fixture
def cleanup_person(stack):
    yield
    with stack.client("admin") as c:  # leave the shared gallery as the other tests expect it
        c.delete(f"/v1/gallery/people/{NEW}")
    assert NEW not in _people(stack)


def test_add_retag_delete_reach_the_matchers(stack, fixtures_dir, cleanup_person):
    known, probe = _photos(fixtures_dir)
    before = _people(stack)
    assert NEW not in before and len(before) == 4
    assert NEW not in [m["id"] for m in _match(stack, probe)["matches"]]

    with stack.client("admin") as c:
        files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in known]
        r = c.post("/v1/gallery/people", data={"id": NEW, "category": "good"}, files=files)
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["id"] == NEW and added["photos"] == len(known) and not added["failed"], added
    assert _people(stack)[NEW] == {"id": NEW, "name": "Nicole Kidman", "category": "good",
                                   "photos": len(known)}
    result = _match(stack, probe)
    assert result["matches"][0]["id"] == NEW, result["matches"]
    assert result["good_news"]["id"] == NEW

    with stack.client("admin") as c:
        r = c.patch(f"/v1/gallery/people/{NEW}", json={"category": "bad"})
    assert r.status_code == 200, r.text
    assert r.json()["category"] == "bad"
    result = _match(stack, probe)
    assert result["bad_news"]["id"] == NEW and result["bad_news"]["category"] == "bad"
    assert result["good_news"]["id"] != NEW

    with stack.client("admin") as c:
        assert c.delete(f"/v1/gallery/people/{NEW}").status_code == 204
        gone = c.delete(f"/v1/gallery/people/{NEW}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert _people(stack).keys() == before.keys()
    result = _match(stack, probe)
    assert NEW not in [m["id"] for m in result["matches"]]
    assert len(result["matches"]) == 4


def test_gallery_edits_need_an_admin_key_and_valid_fields(stack, fixtures_dir, cleanup_person):
    known, _ = _photos(fixtures_dir)
    files = [("photos", (known[0].name, known[0].read_bytes(), "image/jpeg"))]
    with stack.client("client") as c:
        assert c.get("/v1/gallery/people").status_code == 403
        assert c.post("/v1/gallery/people", data={"id": NEW}, files=files).status_code == 403
        assert c.delete("/v1/gallery/people/Tom_Hanks").status_code == 403
    with stack.client("admin") as c:
        r = c.post("/v1/gallery/people", data={"id": NEW, "category": "ugly"}, files=files)
        assert r.status_code in (400, 422) and "category" in r.json()["error"]["message"], r.text
        r = c.post("/v1/gallery/people", data={"id": "../etc"}, files=files)
        assert r.status_code in (400, 422) and "id" in r.json()["error"]["message"], r.text
        r = c.post("/v1/gallery/people", data={"id": NEW})   # not multipart at all
        assert r.status_code == 415 and "'photos'" in r.json()["error"]["message"], r.text
        form = (b'--b0\r\nContent-Disposition: form-data; name="id"\r\n\r\n'
                + NEW.encode() + b"\r\n--b0--\r\n")
        r = c.post("/v1/gallery/people", content=form,
                   headers={"Content-Type": "multipart/form-data; boundary=b0"})
        assert r.status_code in (400, 422) and "'photos'" in r.json()["error"]["message"], r.text
        noface = sorted((fixtures_dir / "noface").iterdir())[0]
        r = c.post("/v1/gallery/people", data={"id": NEW},
                   files=[("photos", (noface.name, noface.read_bytes(), "image/jpeg"))])
        assert r.status_code in (400, 422) and "no_face" in r.json()["error"]["message"], r.text
        r = c.patch("/v1/gallery/people/Nobody", json={"category": "bad"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = c.patch("/v1/gallery/people/Tom_Hanks", json={"category": "ugly"})
        assert r.status_code == 422, r.text
    assert NEW not in _people(stack)
    assert _people(stack)["Tom_Hanks"]["category"] == "good"

