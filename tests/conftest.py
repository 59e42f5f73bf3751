"""Shared fixtures: the real images in ../shared/data, and small synthetic datasets."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# No test may reach a model hub: offline mode and a private HF cache, set before any import of
# huggingface_hub (it reads these variables once, at import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="medprobe-test-hf-")
# The hub-layout models saved there are real architectures (about 1 GB per test process): a cache
# left behind by every run filled the CI disk.
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
os.environ.pop("HF_HUB_CACHE", None)
# Under pytest-xdist every worker is one process per core: one BLAS/torch thread each, or the
# workers' thread pools fight over the same cores; and one joblib process (n_jobs=-1 runs in
# the worker itself), since the text-leakage permutation test's forests ran 1.7-2.2x slower
# in loky's worker processes on 2 shared cores than in the test process.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "LOKY_MAX_CPU_COUNT",
    ):
        os.environ[variable] = "1"

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


@pytest.fixture(scope="session")
def hf_cache() -> Path:
    """The HF hub cache the tests write fake repositories into (``$HF_HOME/hub``)."""
    path = Path(os.environ["HF_HOME"]) / "hub"
    path.mkdir(parents=True, exist_ok=True)
    return path
