"""Queue ``notify``: webhook and e-mail deliveries, and the periodic tasks (run by the
worker started with ``--beat``): reconciler, due retries, retention."""

from lookalike import pipeline
from lookalike.queue import celery_app, stage_task_options
from lookalike.worker import connect_signals, worker_runtime

app = celery_app()
connect_signals()


@app.task(**stage_task_options("notify"))
def notify(delivery_id: str) -> None:
    """Send one delivery (signed webhook or e-mail); a failure schedules the next try."""
    pipeline.deliver(worker_runtime(), delivery_id)


@app.task(**stage_task_options("reconcile"))
def reconcile() -> dict:
    """Re-enqueue jobs whose stage has not moved within its time limit (bounded tries)."""
    return pipeline.reconcile(worker_runtime())


@app.task(**stage_task_options("deliver_due"))
def deliver_due() -> int:
    """Queue deliveries whose retry time has come."""
    return pipeline.deliver_due(worker_runtime())


@app.task(**stage_task_options("expire"))
def expire() -> dict:
    """Delete jobs, objects and embeddings past the retention setting."""
    return pipeline.expire(worker_runtime())
