"""Shared fixtures: the real images in ../shared/data, and small synthetic datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real medical images; skipped on a user's machine, a failure in CI."""
    if not SHARED_DATA.is_dir():
        message = (
            f"real test images not found at {SHARED_DATA} (they live next to the checkout, "
            "in shared/data; see DEVELOPERS notes)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA
