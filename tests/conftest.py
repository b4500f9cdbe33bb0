"""Shared test fixtures. Keep the default run fast: tiny images, tiny models, few threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two cores on CI: one BLAS/OpenMP thread per test process keeps timings predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
MAGNETIC_TILE = REPO_ROOT.parent / "shared" / "datasets" / "magnetic-tile" / "data.yaml"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def magnetic_tile() -> Path:
    """The real-data benchmark set beside the checkout; tests using it skip when absent."""
    if not MAGNETIC_TILE.is_file():
        pytest.skip("../shared/datasets/magnetic-tile is not present")
    return MAGNETIC_TILE
