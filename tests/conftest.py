"""Shared fixtures. Tests read the real files in ../shared/benchkit (present on every developer and CI machine)."""
import os
from pathlib import Path

import pytest

BENCHKIT = Path(os.environ.get("CLICKTAL_BENCHKIT", Path(__file__).resolve().parents[2] / "shared" / "benchkit"))


@pytest.fixture(scope="session")
def benchkit() -> Path:
    if not BENCHKIT.is_dir():
        pytest.fail(f"the shared benchkit is missing at {BENCHKIT} (set CLICKTAL_BENCHKIT)")
    return BENCHKIT
