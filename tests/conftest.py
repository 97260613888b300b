"""Shared test wiring: fixture photos are read in place from ../shared/fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("LOOKALIKE_FIXTURES", REPO.parent / "shared" / "fixtures")).resolve()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"fixture folder not found: {FIXTURES} (set LOOKALIKE_FIXTURES)")
    return FIXTURES


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave things a person may want to look at (screenshots, videos)."""
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
