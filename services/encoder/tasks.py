"""Queue ``encoder``: one job's face analysis. Thin: loads by id, calls the library stage."""

from lookalike import pipeline
from lookalike.queue import celery_app, stage_task_options
from lookalike.worker import connect_signals, worker_runtime

app = celery_app()
connect_signals()


@app.task(**stage_task_options("encode"))
def encode(job_id: str) -> None:
    """original → aligned crop, landmarks, embedding (jobs/<id>/aligned.jpg, face.npz)."""
    pipeline.encode_job(worker_runtime(), job_id)
