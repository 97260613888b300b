"""Webhooks retried with backoff keep the same delivery id and body, and stay signed."""

from __future__ import annotations

import json

from lookalike.notify import SIGNATURE_HEADER, verify_signature
from service_procs import wait_until


def test_failed_webhook_is_retried_with_same_id_and_body(stack, portrait, webhooks):
    hook = f"/hook/{stack.kind}/flaky"
    webhooks.statuses[hook] = [500, 503]  # two failures, then 200
    r = stack.submit(portrait, clips="none", webhook_url=webhooks.url + hook)
    job_id = r.json()["id"]
    assert stack.wait(job_id)["state"] == "succeeded"
    got = wait_until(lambda: (lambda g: g if len(g) >= 3 else None)(webhooks.for_path(hook)), 60,
                     what="three webhook attempts")
    assert len({g["body"] for g in got}) == 1
    assert len({g["headers"]["Lookalike-Delivery"] for g in got}) == 1
    for g in got:
        assert verify_signature(stack.webhook_secrets["client"], g["body"], g["headers"][SIGNATURE_HEADER])
    body = json.loads(got[0]["body"])
    assert body["delivery_id"] == got[0]["headers"]["Lookalike-Delivery"]
    assert body["job"]["id"] == job_id and body["event"] == "job.succeeded"
    row = wait_until(lambda: next((d for d in stack.deliveries(job_id) if d.status == "delivered"), None),
                     10, what="delivery marked delivered")
    assert row.attempts == 3 and row.id == body["delivery_id"]
    assert len(webhooks.for_path(hook)) == 3  # delivered: no more tries


def test_failed_job_is_notified_too(stack, bad_inputs, webhooks):
    hook = f"/hook/{stack.kind}/failed"
    r = stack.submit(bad_inputs / "no_face_coffee.jpg", webhook_url=webhooks.url + hook)
    job_id = r.json()["id"]
    assert stack.wait(job_id)["state"] == "failed"
    got = wait_until(lambda: webhooks.for_path(hook), 30, what="webhook")
    body = json.loads(got[0]["body"])
    assert body["event"] == "job.failed" and body["job"]["error"]["code"] == "no_face"
