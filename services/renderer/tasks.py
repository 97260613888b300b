"""Queue ``renderer``: one job's morph and smile clips."""

from lookalike import pipeline
from lookalike.queue import celery_app, stage_task_options
from lookalike.worker import connect_signals, worker_runtime

app = celery_app()
connect_signals()


@app.task(**stage_task_options("render"))
def render(job_id: str) -> None:
    """aligned face + target crops → MP4/WebP clips and poster under jobs/<id>/media/."""
    pipeline.render_job(worker_runtime(), job_id)
