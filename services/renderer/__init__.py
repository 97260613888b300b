"""Renderer worker: morph and smile clips, poster."""
