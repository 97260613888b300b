"""API keys (hashes at rest, scopes, revocation), job isolation between keys, rate limits."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from service_procs import wait_until


def test_requests_need_a_valid_key(stack):
    with httpx.Client(base_url=stack.base_url, trust_env=False) as c:
        r = c.get("/v1/jobs/0123")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        for token in ("lk_nope_nope", "garbage", stack.keys["client"] + "x"):
            r = c.get("/v1/jobs/0123", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, token
        # X-API-Key works as well as Authorization: Bearer
        r = c.get("/v1/jobs/0123", headers={"X-API-Key": stack.keys["client"]})
        assert r.status_code == 404


def test_a_client_sees_only_its_own_jobs(stack, portrait):
    r = stack.submit(portrait, clips="none")
    job_id = r.json()["id"]
    stack.wait(job_id)
    with stack.client("other") as c:
        assert c.get(f"/v1/jobs/{job_id}").status_code == 404
        assert c.get(f"/v1/jobs/{job_id}/events").status_code == 404
        assert c.delete(f"/v1/jobs/{job_id}").status_code == 404
    with stack.client("admin") as c:  # operators may look at any job
        assert c.get(f"/v1/jobs/{job_id}").json()["id"] == job_id
    assert stack.job(job_id)["state"] == "succeeded"  # untouched by the other key


def test_gallery_needs_the_admin_scope(stack):
    with stack.client("client") as c:
        r = c.get("/v1/gallery/people")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert c.delete("/v1/gallery/people/Tom_Hanks").status_code == 403
    with stack.client("admin") as c:
        people = c.get("/v1/gallery/people").json()["people"]
        assert {p["id"] for p in people} >= {"Tom_Hanks", "Donald_Rumsfeld"}


def test_only_hashes_are_stored(stack):
    from sqlalchemy import select

    from lookalike.jobstore.models import ApiKey

    with stack.db.session() as s:
        rows = {k.id: k for k in s.scalars(select(ApiKey))}
    for role, token in stack.keys.items():
        row = rows[stack.key_ids[role]]
        secret = token.split("_", 2)[2]
        assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in " ".join(str(v) for v in vars(row).values())


def test_revoked_key_is_refused(stack):
    done = stack.cli("keys", "create", "--name", "short-lived", "--json")
    assert done.returncode == 0, done.stderr
    import json

    info = json.loads(done.stdout)
    headers = {"Authorization": f"Bearer {info['key']}"}
    with httpx.Client(base_url=stack.base_url, headers=headers, trust_env=False) as c:
        assert c.get("/v1/jobs/none").status_code == 404
        listed = stack.cli("keys", "list", "--json")
        assert any(k["id"] == info["id"] and not k["revoked"] for k in json.loads(listed.stdout))
        revoked = stack.cli("keys", "revoke", info["id"])
        assert revoked.returncode == 0, revoked.stderr
        wait_until(lambda: c.get("/v1/jobs/none").status_code == 401, 15, interval=0.5,
                   what="revocation to reach the API")
    again = stack.cli("keys", "revoke", info["id"])
    assert again.returncode != 0 and "no active key" in again.stderr


def test_rate_limit_answers_429_with_retry_after(stack):
    with stack.client("limited") as c:  # 5 requests per minute
        codes = [c.get("/v1/jobs/none").status_code for _ in range(5)]
        limited = c.get("/v1/jobs/none")
    if codes != [404] * 5:
        pytest.fail(f"the window may have rolled over mid-test: {codes}")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 61
    with stack.client("client") as c:  # other keys are not affected
        assert c.get("/v1/jobs/none").status_code == 404
