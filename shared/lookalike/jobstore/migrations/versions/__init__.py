"""The job store's migrations, oldest first."""
