"""FastAPI gateway: upload checks at the door, job routes, gallery curation, health, metrics."""
