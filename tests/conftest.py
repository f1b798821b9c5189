"""Shared fixtures. Tests read the real files in ../shared/benchkit (present on every developer and CI machine)."""
import importlib.util
import os
from pathlib import Path

import pytest

BENCHKIT = Path(os.environ.get("CLICKTAL_BENCHKIT", Path(__file__).resolve().parents[2] / "shared" / "benchkit"))


@pytest.fixture(scope="session")
def benchkit() -> Path:
    if not BENCHKIT.is_dir():
        pytest.fail(f"the shared benchkit is missing at {BENCHKIT} (set CLICKTAL_BENCHKIT)")
    return BENCHKIT


TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="session")
def load_tool():
    """Load a tools/*.py front end as a module, to call its ``main(argv)`` in-process."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"clicktal_tool_{name}", TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
