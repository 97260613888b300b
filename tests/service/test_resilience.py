"""Robustness of the distributed stack against real failures, on a stack of its own (its own
Redis, database, bucket, API and workers) so killing parts of it disturbs no other test:

* a renderer worker SIGKILLed mid-task: the job still ends ``succeeded``, exactly once;
* Redis killed (nothing persisted) and started again: no job is lost, submits while it is
  down are accepted and queued later by the reconciler;
* retention: the periodic task deletes old jobs with their objects and embeddings;
* ``/metrics`` shows a real queue depth while no worker takes the queue.

The limits are short so the reconciler (every 1 s, a stage is stalled after its time limit
+ 1 s) rescues a job within seconds rather than minutes; the renderer's is long, so a renderer
lost mid-task must be found by its missing heartbeat.
"""

from __future__ import annotations

import os
import signal

import pytest

from service_procs import Redis, create_database, drop_database, free_port, wait_until
from service_stacks import metric_samples, sample, start_distributed_stack, start_worker

@pytest.fixture(scope="module")
def own(distributed_stack, service_tmp, small_gallery):
    """A private distributed stack: env of the session's one with its own Redis/DB/bucket."""
    root = service_tmp / "resilience"
    redis = Redis(root / "redis").start()
    db_name = f"lookalike_resilience_{os.getpid()}"
    env = dict(distributed_stack.env)
    env.update({
        "LOOKALIKE_DATA_DIR": str(root / "data"),
        "LOOKALIKE_API_PORT": str(free_port()),
        "LOOKALIKE_REDIS_URL": redis.url,
        "LOOKALIKE_DATABASE_URL": create_database(db_name),
        "LOOKALIKE_S3_BUCKET": f"lookalike-resilience-{os.getpid()}",
        # short limits: a stalled stage is re-enqueued time limit + 1 s after it last moved
        "LOOKALIKE_ENCODER_TIME_LIMIT_S": "12",
        "LOOKALIKE_MATCHER_TIME_LIMIT_S": "10",
        # the renderer's is long: a renderer lost mid-task is found by its missing heartbeat
        # (seconds), not by this limit
        "LOOKALIKE_RENDERER_TIME_LIMIT_S": "600",
        "LOOKALIKE_RECONCILE_MAX_TRIES": "5",
        # longer, larger clips so that a render lasts long enough to be caught in the middle
        "LOOKALIKE_VIDEO_SIZE": "320",
        "LOOKALIKE_MORPH_SECONDS": "2.0",
    })
    stack = start_distributed_stack("resilience", env, root / "data", small_gallery)
    stack.redis = redis
    yield stack
    stack.stop()
    redis.stop()
    try:
        stack.store.delete_prefix("")
    except Exception:  # noqa: BLE001 - best effort on a shared S3 server
        pass
    drop_database(db_name)


def _alive_check(stack):
    for name, proc in stack.procs.items():
        assert proc.alive(), f"{name} exited:\n{proc.output()[-3000:]}"


def _wait_final(stack, job_id: str, timeout: float = 120) -> dict:
    try:
        return stack.wait(job_id, timeout=timeout)
    except TimeoutError:
        print(stack.log_tail(80))
        raise


def _pool_children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


@pytest.mark.parametrize("victim", ["pool-process", "whole-worker"])
def test_renderer_killed_mid_task_job_still_succeeds_exactly_once(own, portrait, webhooks, victim):
    hook = f"/hook/resilience/killed-{victim}"
    r = own.submit(portrait, clips="good,smile", webhook_url=webhooks.url + hook)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]

    # catch the renderer in the middle of its task: the row says it claimed the job (the
    # matcher sets the state to rendering, the renderer's claim sets stage and counts a run)
    wait_until(lambda: (lambda j: j.state == "rendering" and j.stage == "render")(own.job_row(job_id)),
               60, interval=0.02, what="renderer at work")
    worker = own.procs["renderer"]
    if victim == "pool-process":
        # the OOM killer's way: only the process running the task dies; its parent sees the
        # loss and (reject_on_worker_lost) puts the message back, a new pool process takes it
        children = _pool_children(worker.pid)
        assert len(children) == 1, children
        os.kill(children[0], signal.SIGKILL)
        assert own.job_row(job_id).state == "rendering"   # it died before finishing
    else:
        # a lost node: the worker and its pool process die with the message unacknowledged;
        # their heartbeat expires, the reconciler re-enqueues the stage, a fresh worker renders it
        os.killpg(worker.pid, signal.SIGKILL)
        worker.popen.wait(10)
        assert own.job_row(job_id).state == "rendering"
        start_worker(own, "renderer", own.data_dir / "logs", name="renderer")
    # well before the renderer's 600 s time limit
    job = _wait_final(own, job_id, timeout=90)
    assert job["state"] == "succeeded", job
    row = own.job_row(job_id)
    assert row.runs == 4, row.runs  # encode, match, render (killed), render again
    if victim == "pool-process":
        assert worker.alive()
        assert "WorkerLostError" in worker.output() or "SIGKILL" in worker.output()

    # exactly once: one delivery, one POST, and one object per artifact (fixed keys)
    rows = wait_until(lambda: [d for d in own.deliveries(job_id) if d.status == "delivered"] and
                      own.deliveries(job_id), 30, what="webhook delivered")
    assert [(d.channel, d.status, d.attempts) for d in rows] == [("webhook", "delivered", 1)]
    posts = webhooks.for_path(hook)
    assert len(posts) == 1, posts
    keys = own.objects(f"jobs/{job_id}/")
    assert {k.rsplit("/", 1)[-1] for k in keys if "/media/" not in k} == {
        "original", "aligned.jpg", "face.npz", "targets.npz", "target-good.jpg"}, keys
    media = sorted(k for k in keys if "/media/" in k)
    assert media == sorted(v for k, v in row.artifacts.items() if "/media/" in v), (media, row.artifacts)
    assert {k.rsplit("/", 1)[-1] for k in media} >= {"morph-good.mp4", "smile.mp4"}, media


def test_redis_restart_loses_no_job(own, portrait):
    before = [own.submit(portrait, clips="smile").json()["id"] for _ in range(2)]
    # some of these are queued or running right now: their messages die with Redis
    own.redis.kill()
    try:
        ready = own.client().get("/readyz")
        assert ready.status_code == 503, ready.text
        checks = ready.json()["checks"]
        assert checks["broker"].startswith("down") and checks["database"] == "ok", checks
        # accepted while the broker is down: the job is in the database, queued later
        during = own.submit(portrait, clips="none")
        assert during.status_code == 202, during.text
        during_id = during.json()["id"]
        assert own.job_row(during_id).state == "queued"
    finally:
        own.redis.start()
    _alive_check(own)
    wait_until(lambda: own.client().get("/readyz").status_code == 200, 30, what="ready again")
    after = own.submit(portrait, clips="none").json()["id"]
    for job_id in before + [during_id, after]:
        job = _wait_final(own, job_id)
        assert job["state"] == "succeeded", job
    assert own.job_row(during_id).attempts == 0  # reset by the stage that finally ran


def test_queue_depth_is_real_while_no_worker_takes_the_queue(own, portrait):
    own.procs["encoder"].stop()
    try:
        job_id = own.submit(portrait, clips="none").json()["id"]
        depth = wait_until(lambda: sample(metric_samples(own), "lookalike_queue_depth", queue="encoder"),
                           20, what="queue depth")
        assert depth == 1.0
        assert sample(metric_samples(own), "lookalike_jobs", state="queued") == 1.0
    finally:
        start_worker(own, "encoder", own.data_dir / "logs", name="encoder")
    assert _wait_final(own, job_id)["state"] == "succeeded"
    samples = metric_samples(own)
    assert sample(samples, "lookalike_queue_depth", queue="encoder") == 0.0
    assert sample(samples, "lookalike_jobs", state="queued") == 0.0


def test_retention_deletes_old_jobs_with_objects_and_embeddings(own, portrait):
    job_id = own.submit(portrait, clips="none").json()["id"]
    assert _wait_final(own, job_id)["state"] == "succeeded"
    names = {k.rsplit("/", 1)[-1] for k in own.objects(f"jobs/{job_id}/")}
    assert {"original", "aligned.jpg", "face.npz"} <= names, names

    # the periodic worker again, now with a retention of about a second
    own.procs["notify"].stop()
    env = dict(own.env, LOOKALIKE_RETENTION_HOURS="0.0003", LOOKALIKE_RETENTION_EVERY_S="0.5")
    try:
        start_worker(own, "notify", own.data_dir / "logs", env=env, name="notify")
        wait_until(lambda: own.job_row(job_id) is None, 30, what="job purged")
        assert own.objects(f"jobs/{job_id}/") == []
        with own.client() as c:
            assert c.get(f"/v1/jobs/{job_id}").status_code == 404
    finally:
        own.procs["notify"].stop()
        start_worker(own, "notify", own.data_dir / "logs", name="notify")

