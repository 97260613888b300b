"""Encoder worker: face analysis (decode → detect → landmarks → align → embed)."""
