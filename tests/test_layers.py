"""The layer contract: a layer imports only the layers below it, and only ``pipeline.runs`` imports ``models``.

    tools  >  pipeline.runs  >  models  >  pipeline.postprocess | pipeline.evaluation  >  pipeline.data  >  pipeline.core
    pipeline.runs  >  extractors  >  pipeline.data  >  pipeline.core
    (extractors write the cache; of the pipeline only the application layer, pipeline.runs, calls them: detection
    on new video files extracts with a run's options)
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what each layer may import (besides itself)
ALLOWED = {
    "pipeline.core": set(),
    "pipeline.data": {"pipeline.core"},
    "pipeline.postprocess": {"pipeline.core", "pipeline.data"},
    "pipeline.evaluation": {"pipeline.core", "pipeline.data"},
    "models": {"pipeline.core", "pipeline.data"},
    "pipeline.runs": {"pipeline.core", "pipeline.data", "pipeline.postprocess", "pipeline.evaluation", "models",
                      "extractors"},
    "extractors": {"pipeline.core", "pipeline.data"},
    "tools": {"pipeline.core", "pipeline.data", "pipeline.postprocess", "pipeline.evaluation", "pipeline.runs",
              "extractors"},
}


def layer_of(module: str) -> str | None:
    """``clicktal.pipeline.data.cache`` -> ``pipeline.data``; None outside clicktal."""
    parts = module.split(".")
    if parts[0] != "clicktal" or len(parts) < 2:
        return None
    if parts[1] == "pipeline":
        return ".".join(parts[1:3]) if len(parts) > 2 else "pipeline"
    return parts[1]


def source_files():
    for layer in ALLOWED:
        folder = ROOT / layer.replace(".", "/")
        for path in sorted(folder.rglob("*.py")):
            yield layer, path


def imports(path: Path, package: str):
    """Every clicktal module ``path`` (a module of ``package``) imports, relative imports resolved, with its line."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
            if module in ("clicktal", "clicktal.pipeline"):  # "from clicktal.pipeline import data"
                for alias in node.names:
                    yield f"{module}.{alias.name}", node.lineno


def violations(layer: str, path: Path, package: str) -> list[str]:
    bad = []
    for module, line in imports(path, package):
        target = layer_of(module)
        if target not in (None, layer, "pipeline") and target not in ALLOWED[layer]:
            bad.append(f"{path}:{line} imports {module} ({target})")
    return bad


def package_of(path: Path) -> str:
    return "clicktal." + ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])


def test_every_source_file_belongs_to_a_layer():
    top = {p.name for p in (ROOT / "pipeline").iterdir() if p.suffix == ".py" and p.name != "__init__.py"}
    assert not top, f"modules outside a layer sub-package of pipeline/: {sorted(top)}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_import_runs_back_up(layer):
    bad = [v for own, path in source_files() if own == layer for v in violations(layer, path, package_of(path))]
    assert not bad, "\n".join(bad)


def test_the_contract_test_catches_upward_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from clicktal.models.sfnet import SFNet\nfrom ..runs import engine\nfrom .cache import x\n")
    found = violations("pipeline.data", bad, "clicktal.pipeline.data")
    assert len(found) == 2 and "clicktal.models.sfnet (models)" in found[0]
    assert "clicktal.pipeline.runs (pipeline.runs)" in found[1]
