from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from clicktal.pipeline.core.config import (ConfigError, FieldError, config_to_dict, dump_config, load_config,
                                           nested_error)
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.core.registry import Registry, import_object


@dataclass
class Optim:
    lr: float = 1e-3
    kind: Literal["adam", "sgd"] = "adam"


@dataclass
class Experiment:
    name: str
    iterations: int = 10
    optim: Optim = field(default_factory=Optim)
    tiou: list[float] = field(default_factory=lambda: [0.5])
    clip: Optional[float] = None


def write(tmp_path, text):
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


def test_loads_nested_typed_values(tmp_path):
    cfg = load_config(Experiment, write(tmp_path, "name: a\noptim: {lr: 1, kind: sgd}\ntiou: [0.1, 0.3]\nclip: 2\n"))
    assert cfg == Experiment("a", 10, Optim(1.0, "sgd"), [0.1, 0.3], 2.0)
    assert isinstance(cfg.optim.lr, float)


@pytest.mark.parametrize("text, message", [
    ("name: a\niterations: 5\nbogus: 1\n", "unknown key.*bogus"),
    ("name: a\noptim: {lr: 1, momentum: 0.9}\n", "optim.momentum"),
    ("name: a\niterations: '5'\n", "iterations: expected an integer"),
    ("name: a\niterations: true\n", "iterations: expected an integer"),
    ("name: a\noptim: {kind: rmsprop}\n", "optim.kind: expected one of"),
    ("name: a\ntiou: [0.1, x]\n", r"tiou\[1\]: expected a number"),
    ("iterations: 5\n", "name"),
    ("name: [a\n", "not valid YAML"),
])
def test_errors_name_the_key_and_the_file(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(Experiment, p)
    assert str(p) in str(err.value)


def test_overrides_and_dump_round_trip(tmp_path):
    cfg = load_config(Experiment, write(tmp_path, "name: a\n"), overrides={"optim": {"lr": 0.5}})
    assert cfg.optim == Optim(0.5, "adam")
    out = tmp_path / "resolved.yaml"
    dump_config(cfg, out)
    assert load_config(Experiment, out) == cfg
    assert config_to_dict(cfg)["optim"]["lr"] == 0.5


def test_registry_registers_and_names_unknown_entries():
    reg = Registry("model")

    @reg.register("tiny")
    def build_tiny():
        return "built"

    assert reg.get("tiny")() == "built" and "tiny" in reg and reg.names() == ["tiny"]
    with pytest.raises(KeyError, match="unknown model 'huge'; known: tiny"):
        reg.get("huge")
    with pytest.raises(KeyError, match="already registered"):
        reg.register("tiny")(build_tiny)


def test_import_object_imports_what_module_colon_attribute_names():
    assert import_object("clicktal.pipeline.core.geometry:FeatureGeometry") is FeatureGeometry
    for bad in ("clicktal.pipeline.core.geometry", "clicktal.pipeline.core.geometry:", ":FeatureGeometry"):
        with pytest.raises(ValueError, match="expected 'package.module:attribute'"):
            import_object(bad)


@dataclass
class Checked:
    lr: float = 0.1

    def __post_init__(self):
        if self.lr <= 0:
            raise FieldError("lr", f"must be > 0, got {self.lr}")


@dataclass
class Outer:
    inner: Checked = field(default_factory=Checked)


def test_post_init_field_errors_name_the_dotted_key_and_the_file(tmp_path):
    p = write(tmp_path, "inner: {lr: 0}\n")
    with pytest.raises(ConfigError, match=rf"^{p}: inner\.lr: must be > 0, got 0\.0$"):
        load_config(Outer, p)
    inner = ConfigError("params: mining.xi: expected a number, got 'x'")
    assert (nested_error("params", inner).key, nested_error("params", inner).reason) == \
        ("params.mining.xi", "expected a number, got 'x'")
    assert nested_error("params", ConfigError("params: unknown key(s) etaa")).key == "params"


# ------------------------------------------------------------------------------------------------------ _base_


def test_base_chain_of_two_levels_merges_mappings_and_replaces_lists(tmp_path):
    (tmp_path / "grand.yaml").write_text("name: g\niterations: 3\noptim: {lr: 0.5, kind: sgd}\ntiou: [0.1, 0.3]\n")
    (tmp_path / "parent.yaml").write_text("_base_: grand.yaml\noptim: {lr: 0.25}\nclip: 1.0\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("_base_: ../parent.yaml\nname: c\ntiou: [0.7]\n")  # relative to the child's folder
    assert load_config(Experiment, child) == Experiment("c", 3, Optim(0.25, "sgd"), [0.7], 1.0)


def test_base_list_is_merged_in_order_under_the_child(tmp_path):
    (tmp_path / "a.yaml").write_text("iterations: 4\noptim: {kind: sgd}\ntiou: [0.2]\n")
    (tmp_path / "b.yaml").write_text("iterations: 5\noptim: {lr: 2}\n")
    child = write(tmp_path, "_base_: [a.yaml, b.yaml]\nname: x\n")
    assert load_config(Experiment, child) == Experiment("x", 5, Optim(2.0, "sgd"), [0.2], None)
    # the child wins over its bases, the overrides over all of them
    child.write_text("_base_: [a.yaml, b.yaml]\nname: x\niterations: 6\n")
    assert load_config(Experiment, child, overrides={"optim": {"kind": "adam"}}) == \
        Experiment("x", 6, Optim(2.0, "adam"), [0.2], None)


def test_a_typo_under_a_base_names_the_dotted_key_and_both_files(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("name: a\noptim: {kind: sgd}\n")
    child = write(tmp_path, "_base_: base.yaml\noptim: {lrr: 1}\n")
    with pytest.raises(ConfigError, match=r"optim\.lrr") as err:
        load_config(Experiment, child)
    assert str(child) in str(err.value) and str(base) in str(err.value)
    base.write_text("name: a\noptim: {kind: rmsprop}\n")  # a bad value read from the base: both files too
    child.write_text("_base_: base.yaml\n")
    with pytest.raises(ConfigError, match=r"optim\.kind: expected one of") as err:
        load_config(Experiment, child)
    assert str(child) in str(err.value) and str(base) in str(err.value)


def test_delete_marker_replaces_the_inherited_mapping_instead_of_merging(tmp_path):
    (tmp_path / "base.yaml").write_text("name: a\noptim: {lr: 0.5, kind: sgd}\n")
    merged = write(tmp_path, "_base_: base.yaml\noptim: {lr: 2}\n")
    assert load_config(Experiment, merged).optim == Optim(2.0, "sgd")
    replaced = write(tmp_path, "_base_: base.yaml\noptim: {_delete_: true, lr: 2}\n")
    assert load_config(Experiment, replaced).optim == Optim(2.0, "adam")  # kind: sgd dropped, the default back
    # false merges as usual; either way the marker never reaches the typed config
    kept = write(tmp_path, "_base_: base.yaml\noptim: {_delete_: false, lr: 2}\n")
    assert load_config(Experiment, kept).optim == Optim(2.0, "sgd")


def test_a_delete_marker_that_is_not_a_bool_names_the_key_and_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("name: a\n")
    child = write(tmp_path, "_base_: base.yaml\noptim: {_delete_: yes please}\n")
    with pytest.raises(ConfigError, match=rf"^{child}: optim\._delete_: expected true or false"):
        load_config(Experiment, child)


def test_a_missing_base_names_the_file_and_the_child(tmp_path):
    child = write(tmp_path, "_base_: nowhere.yaml\nname: a\n")
    with pytest.raises(ConfigError, match="cannot read it") as err:
        load_config(Experiment, child)
    assert str(tmp_path / "nowhere.yaml") in str(err.value) and f"the _base_ of {child}" in str(err.value)


@pytest.mark.parametrize("value", ["5", "[]", "['']", "{a: b}"])
def test_a_base_that_is_not_file_names_is_refused(tmp_path, value):
    child = write(tmp_path, f"_base_: {value}\nname: a\n")
    with pytest.raises(ConfigError, match=rf"^{child}: _base_: expected a file name or a list of them"):
        load_config(Experiment, child)


def test_a_cycle_of_bases_is_refused_naming_the_chain(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("_base_: b.yaml\nname: a\n")
    b.write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself") as err:
        load_config(Experiment, a)
    assert f"{a} -> {b} -> {a}" in str(err.value)
    a.write_text("_base_: ./a.yaml\nname: a\n")  # itself, spelled another way
    with pytest.raises(ConfigError, match=f"inherits from itself \\({a} -> {a}\\)"):
        load_config(Experiment, a)


def test_the_same_base_twice_in_a_diamond_is_not_a_cycle(tmp_path):
    (tmp_path / "root.yaml").write_text("name: r\niterations: 2\n")
    (tmp_path / "left.yaml").write_text("_base_: root.yaml\noptim: {kind: sgd}\n")
    (tmp_path / "right.yaml").write_text("_base_: root.yaml\nclip: 3.0\n")
    child = write(tmp_path, "_base_: [left.yaml, right.yaml]\n")
    assert load_config(Experiment, child) == Experiment("r", 2, Optim(1e-3, "sgd"), [0.5], 3.0)


def test_the_dumped_config_is_resolved_and_reloads_to_the_same_config(tmp_path):
    (tmp_path / "base.yaml").write_text("name: b\noptim: {lr: 0.5, kind: sgd}\ntiou: [0.1]\n")
    cfg = load_config(Experiment, write(tmp_path, "_base_: base.yaml\niterations: 7\noptim: {lr: 0.25}\n"))
    out = tmp_path / "elsewhere" / "resolved.yaml"
    out.parent.mkdir()
    dump_config(cfg, out)  # in another folder: it cannot lean on base.yaml
    assert "_base_" not in out.read_text()
    assert load_config(Experiment, out) == cfg == Experiment("b", 7, Optim(0.25, "sgd"), [0.1], None)
