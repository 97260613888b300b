"""Queue ``matcher``: one job's gallery search. Reloads the index when the gallery changes."""

from lookalike import pipeline
from lookalike.queue import celery_app, stage_task_options
from lookalike.worker import connect_signals, worker_runtime

app = celery_app()
connect_signals()


@app.task(**stage_task_options("match"))
def match(job_id: str) -> None:
    """embedding → top-k people, best good and bad; copies their crops to the job."""
    pipeline.match_job(worker_runtime(), job_id)
