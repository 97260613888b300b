"""``/readyz`` names each dependency; ``/metrics`` carries real numbers after a job: request
latency, jobs by state (as the job store counts them), stage durations and queue depth."""

from __future__ import annotations

import httpx

from service_stacks import metric_samples, sample


def test_readyz_reports_each_dependency(stack):
    r = httpx.get(stack.base_url + "/readyz", timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    broker = "ok" if stack.kind == "distributed" else "in-process"
    assert body["checks"] == {"database": "ok", "storage": "ok", "broker": broker, "gallery": "ok"}


def test_metrics_after_a_job(stack, portrait):
    before = metric_samples(stack)
    posted_before = sample(before, "lookalike_http_request_duration_seconds_count",
                           method="POST", route="/v1/jobs", status="202") or 0
    encodes_before = sample(before, "lookalike_stage_duration_seconds_count", stage="encode") or 0

    r = stack.submit(portrait, clips="none")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert stack.wait(job_id)["state"] == "succeeded"
    with stack.client() as c:
        assert c.get(f"/v1/jobs/{job_id}").status_code == 200

    samples = metric_samples(stack)
    # request latency, by method, route template (not the raw path) and status
    assert sample(samples, "lookalike_http_request_duration_seconds_count",
                  method="POST", route="/v1/jobs", status="202") == posted_before + 1
    assert sample(samples, "lookalike_http_request_duration_seconds_sum",
                  method="POST", route="/v1/jobs", status="202") > 0
    assert sample(samples, "lookalike_http_request_duration_seconds_count",
                  method="GET", route="/v1/jobs/{job_id}", status="200") >= 1
    assert not [lab for lab, _ in samples["lookalike_http_request_duration_seconds_count"]
                if job_id in lab["route"]]

    # jobs by state: the job store's own counts
    from lookalike.jobstore import repo

    with stack.db.session() as s:
        counts = repo.count_by_state(s)
    assert counts.get("succeeded", 0) >= 1
    for state in ("queued", "encoding", "matching", "rendering", "succeeded", "failed"):
        assert sample(samples, "lookalike_jobs", state=state) == counts.get(state, 0), state

    # stage durations from the processes that ran the stages
    assert sample(samples, "lookalike_stage_duration_seconds_count", stage="encode") >= encodes_before + 1
    for stage in ("encode", "match"):
        n = sample(samples, "lookalike_stage_duration_seconds_count", stage=stage)
        total = sample(samples, "lookalike_stage_duration_seconds_sum", stage=stage)
        assert n >= 1 and total > 0, (stage, n, total)
        assert sample(samples, "lookalike_stage_duration_seconds_bucket", stage=stage, le="+Inf") == n

    # queue depth per queue: nothing waits once the job is done
    for queue in ("encoder", "matcher", "renderer", "notify"):
        assert sample(samples, "lookalike_queue_depth", queue=queue) == 0, queue
