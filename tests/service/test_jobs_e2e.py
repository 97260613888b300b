"""End to end over HTTP, against both stacks: a photo goes in, a result comes out — by
polling, by server-sent events, by signed webhook and by e-mail."""

from __future__ import annotations

import re

import httpx
import pytest

from lookalike.notify import SIGNATURE_HEADER, verify_signature
from service_procs import wait_until
from service_stacks import decode_video, sse_events

def tamper(url: str) -> str:
    """The same link with a wrong signature (S3 presigned or our own signed link)."""
    if "X-Amz-Signature=" in url:
        return url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    return url.replace("sig=", "sig=x")


ORDER = ["queued", "encoding", "matching", "rendering", "succeeded"]


def test_photo_to_matches_and_videos_by_events_webhook_and_email(stack, portrait, webhooks, mailbox):
    hook = f"/hook/{stack.kind}/full"
    address = f"visitor-{stack.kind}@example.com"
    r = stack.submit(portrait, webhook_url=webhooks.url + hook, email=address)
    assert r.status_code == 202, r.text
    accepted = r.json()
    job_id = accepted["id"]
    assert accepted["state"] == "queued"
    assert r.headers["location"] == f"{stack.base_url}/v1/jobs/{job_id}"
    assert accepted["links"]["events"].endswith(f"/v1/jobs/{job_id}/events")

    # live events: every change, in pipeline order, ending with the final state
    events = sse_events(stack, job_id)
    states = [e["state"] for e in events]
    assert states[-1] == "succeeded", states
    assert states == sorted(states, key=ORDER.index), states  # never goes back
    assert "rendering" in states and states.count("succeeded") == 1
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0

    # polling gives the same final job
    job = stack.job(job_id)
    assert job["state"] == "succeeded" and job["stage"] is None and job["error"] is None
    assert {"encode", "match", "render", "total"} <= set(job["timings_ms"])
    assert all(v >= 0 for v in job["timings_ms"].values())
    result = job["result"]
    assert result["face"]["landmarks"] == 68 and result["face"]["faces_seen"] == 1
    ids = [m["id"] for m in result["matches"]]
    assert len(ids) == 4 and len(set(ids)) == 4  # every person of the small gallery, once
    sims = [m["similarity"] for m in result["matches"]]
    assert sims == sorted(sims, reverse=True) and all(0 <= s <= 1 for s in sims)
    assert result["good_news"]["category"] == "good"
    assert result["bad_news"]["id"] == "Donald_Rumsfeld" and result["bad_news"]["category"] == "bad"

    # artifacts: time-limited URLs that work without an API key; the videos decode
    artifacts = result["artifacts"]
    for name in ("aligned", "morph_good_mp4", "morph_bad_mp4", "smile_mp4", "poster"):
        assert name in artifacts, sorted(artifacts)
    with httpx.Client(timeout=30, trust_env=False) as c:
        for name in ("morph_good_mp4", "morph_bad_mp4", "smile_mp4"):
            got = c.get(artifacts[name])
            assert got.status_code == 200, (name, got.status_code)
            frames, width, height = decode_video(got.content)
            assert frames >= 20 and (width, height) == (256, 256), (name, frames, width, height)
        aligned = c.get(artifacts["aligned"])
        assert aligned.status_code == 200 and aligned.content[:3] == b"\xff\xd8\xff"
        assert c.get(tamper(artifacts["aligned"])).status_code == 403

    # the webhook: signed with this key's secret, one delivery
    got = wait_until(lambda: webhooks.for_path(hook), 30, what="webhook")
    request = got[0]
    secret = stack.webhook_secrets["client"]
    assert verify_signature(secret, request["body"], request["headers"][SIGNATURE_HEADER])
    assert not verify_signature(stack.webhook_secrets["other"], request["body"],
                                request["headers"][SIGNATURE_HEADER])
    import json

    body = json.loads(request["body"])
    assert body["event"] == "job.succeeded" and body["job"]["id"] == job_id
    assert body["delivery_id"] == request["headers"]["Lookalike-Delivery"]
    assert body["job"]["result"]["bad_news"]["id"] == "Donald_Rumsfeld"

    # the e-mail: a link to the result that works without a key
    mail = wait_until(lambda: mailbox.to(address), 30, what="e-mail")[0]
    link = re.search(r"(http://\S+/v1/results/" + job_id + r"\?exp=\d+&sig=[\w-]+)", mail["data"])
    assert link, mail["data"]
    shared = httpx.get(link.group(1), timeout=10, trust_env=False)
    assert shared.status_code == 200 and shared.json()["id"] == job_id
    assert httpx.get(link.group(1).replace("sig=", "sig=0"), timeout=10, trust_env=False).status_code == 403

    # exactly one notification of each kind
    assert len(webhooks.for_path(hook)) == 1
    assert len(mailbox.to(address)) == 1
    rows = stack.deliveries(job_id)
    assert sorted(d.channel for d in rows) == ["email", "webhook"]
    assert all(d.status == "delivered" and d.attempts == 1 for d in rows)


def test_polling_match_only(stack, portrait):
    r = stack.submit(portrait, clips="none", top_k=2)
    assert r.status_code == 202, r.text
    job = stack.wait(r.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["options"] == {"top_k": 2, "clips": []}
    assert len(job["result"]["matches"]) == 2
    assert set(job["result"]["artifacts"]) == {"aligned"}
    assert "render" not in job["timings_ms"]


@pytest.mark.parametrize("name, codes", [("no_face_coffee.jpg", {"no_face"}),
                                         ("tiny_face_in_canvas.jpg", {"no_face", "face_too_small"})])
def test_worker_only_problems_fail_the_job_with_their_code(stack, bad_inputs, name, codes):
    r = stack.submit(bad_inputs / name, clips="all")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = stack.wait(job_id)
    assert job["state"] == "failed" and job["stage"] == "encode"
    assert job["error"]["code"] in codes and job["error"]["advice"]
    assert job["result"] is None
    # nothing was rendered: only the original is stored
    assert [k.rsplit("/", 1)[-1] for k in stack.objects(f"jobs/{job_id}/")] == ["original"]


@pytest.mark.parametrize("name", ["exif_orientation_6.jpg", "cmyk.jpg", "iphone.heic",
                                  "modern.webp", "rgba_transparent_border.png", "large_12mp.jpg"])
def test_awkward_but_valid_photos_succeed(embedded_stack, bad_inputs, name):
    r = embedded_stack.submit(bad_inputs / name, clips="none", top_k=1)
    assert r.status_code == 202, r.text
    job = embedded_stack.wait(r.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    assert len(job["result"]["matches"]) == 1


def test_delete_removes_every_object_and_the_embedding(stack, portrait, webhooks):
    r = stack.submit(portrait, clips="smile", webhook_url=webhooks.url + "/hook/delete")
    job_id = r.json()["id"]
    job = stack.wait(job_id)
    assert job["state"] == "succeeded", job
    sent = wait_until(lambda: [d for d in stack.deliveries(job_id) if d.status == "delivered"],
                      30, what="webhook delivered")
    assert "matches" in sent[0].body
    names = {k.rsplit("/", 1)[-1] for k in stack.objects(f"jobs/{job_id}/")}
    assert {"original", "aligned.jpg", "face.npz", "smile.mp4"} <= names, names
    url = job["result"]["artifacts"]["smile_mp4"]

    with stack.client("other") as c:
        assert c.delete(f"/v1/jobs/{job_id}").status_code == 404  # not theirs
    assert stack.objects(f"jobs/{job_id}/")
    with stack.client() as c:
        assert c.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert c.get(f"/v1/jobs/{job_id}").status_code == 404
        assert c.get(f"/v1/jobs/{job_id}/events").status_code == 404
    assert stack.objects(f"jobs/{job_id}/") == []
    row = stack.job_row(job_id)
    assert row.deleted_at is not None and row.face is None and row.result is None
    assert httpx.get(url, timeout=10, trust_env=False).status_code in (403, 404)
    # the sent webhook's row stays (it is never sent twice) without the result it carried
    assert [(d.status, d.body, d.target) for d in stack.deliveries(job_id)] == [("delivered", "", "")]
