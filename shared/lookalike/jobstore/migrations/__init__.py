"""Alembic environment of the job store."""
