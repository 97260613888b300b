"""Matcher worker: gallery index and search."""
