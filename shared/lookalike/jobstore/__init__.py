"""The job store: SQLAlchemy 2 models and repository functions (PostgreSQL or SQLite).

The database, not the broker, is the source of truth for a job: its state, stage, timings,
result and error live here; pixels and arrays live in the object store under ``jobs/<id>/``.
State changes are compare-and-set (``transition``), so a redelivered or duplicated task can
never move a job twice.
"""

from lookalike.jobstore.db import Database, open_database
from lookalike.jobstore.models import ApiKey, Base, Delivery, GalleryState, Job

__all__ = ["ApiKey", "Base", "Database", "Delivery", "GalleryState", "Job", "open_database"]
