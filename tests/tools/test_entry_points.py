"""The console commands `pip install` creates are the tools' own main functions, and they run."""
import configparser
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = [x.strip() for x in cfg["options.entry_points"]["console_scripts"].splitlines() if x.strip()]
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def test_every_tool_has_its_command_and_each_points_at_the_tools_main():
    commands = scripts()
    tools = {p.stem for p in (REPO / "tools").glob("*.py") if p.stem not in ("__init__", "tables")}
    assert {target.split(":")[0].rsplit(".", 1)[1] for target in commands.values()} == tools
    for name, target in commands.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


@pytest.mark.parametrize("name", sorted(scripts()))
def test_installed_command_runs(name):
    exe = Path(sys.executable).parent / name
    if not exe.exists():
        pytest.skip(f"{name} is not installed in this environment (pip install -e . creates it)")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and f"usage: {name}" in out.stdout
