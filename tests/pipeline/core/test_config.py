from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from clicktal.pipeline.core.config import (ConfigError, FieldError, config_to_dict, dump_config, load_config,
                                           nested_error)
from clicktal.pipeline.core.registry import Registry


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
