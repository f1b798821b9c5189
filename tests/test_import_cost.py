"""Checking a config imports no torch: the schema, the data config and every localizer's typed config are torch-free,
and a localizer's network module is imported only when it is built. Each check runs in a fresh interpreter (this
one has torch already)."""
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_loading_every_shipped_config_imports_no_torch():
    out = run_fresh("""
        import sys
        from pathlib import Path
        import clicktal.pipeline.runs.schema as schema
        from clicktal.pipeline.core.config import load_config
        paths = sorted(Path("configs").glob("*.yaml"))
        for path in paths:
            load_config(schema.ExperimentConfig, path, {"train": {"device": "cuda:1"}})
        loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "clicktal.models.")))
        print(len(paths), loaded)
        """)
    count, loaded = out.split(" ", 1)
    assert int(count) == len(list((REPO / "configs").glob("*.yaml"))) >= 9
    # the registry and the torch-free typed configs only: no network module, no torch
    assert eval(loaded) == ["clicktal.models.backtal_config", "clicktal.models.fsn_config",
                            "clicktal.models.kinetics_config", "clicktal.models.registry",
                            "clicktal.models.segment_config", "clicktal.models.sfnet_config"]


def test_without_torch_bad_models_are_still_refused_at_load_naming_the_key_and_the_choices(tmp_path):
    models = ["{name: sfnett}", "{name: sfnet, params: {mining: {xii: 0.9}}}", "{name: fsn, params: {dilations: [0]}}"]
    paths = []
    for i, model in enumerate(models):
        paths.append(tmp_path / f"bad{i}.yaml")
        paths[-1].write_text(f"name: bad\nmodel: {model}\n")
    out = run_fresh(f"""
        import sys
        from clicktal.pipeline.core.config import ConfigError, load_config
        from clicktal.pipeline.runs.schema import ExperimentConfig
        for path in {[str(p) for p in paths]!r}:
            try:
                load_config(ExperimentConfig, path)
            except ConfigError as e:
                print(e)
        print("torch" in sys.modules)
        """)
    unknown, typo, value, torch_loaded = out.strip().splitlines()
    assert unknown == f"{paths[0]}: model.name: unknown localizer 'sfnett'; known: backtal, fsn, kinetics, segment, " \
                      f"sfnet, wfsn"
    assert typo.startswith(f"{paths[1]}: model.params: unknown key(s) mining.xii for MiningConfig; known: ")
    assert value == f"{paths[2]}: model.params.dilations: needs one or more dilations >= 1, got [0]"
    assert torch_loaded == "False"


def test_a_localizer_imports_its_network_module_when_it_is_first_built():
    out = run_fresh("""
        import sys
        from clicktal.models import build_localizer
        before = "clicktal.models.fsn" in sys.modules, "torch" in sys.modules
        model, params = build_localizer("wfsn", {"hidden_dim": 8}, input_dim=16, num_classes=3,
                                        streams={"rgb": (0, 8), "flow": (8, 16)})
        print(before, type(model).__module__, params["hidden_dim"], "clicktal.models.sfnet" in sys.modules)
        """)
    assert out.split() == ["(False,", "False)", "clicktal.models.fsn", "8", "False"]
