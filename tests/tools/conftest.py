"""Load a tools/*.py front end as a module, to call its ``main(argv)`` in-process."""
import importlib.util
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture(scope="session")
def load_tool():
    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"clicktal_tool_{name}", TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
