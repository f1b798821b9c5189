"""The method records: each built-in method's presets are the ones PRESETS serves, its label needs are checked when
a config loads (one line naming data.labels and what the method needs), a name or preset already taken is refused,
and an evaluation protocol is an object (FSN's NMS at t - 0.1 per tIoU)."""
import pytest

from clicktal.models import LOCALIZERS, FSNConfig, LabelNeed, Method, register_method
from clicktal.pipeline.core.config import ConfigError, config_from_dict
from clicktal.pipeline.core.postprocess import PRESETS, STANDARD, NmsPerTiou, PostprocessConfig
from clicktal.pipeline.runs.schema import ExperimentConfig


def test_every_preset_is_declared_by_one_method_record():
    owners = {p: name for name in LOCALIZERS.names() for p in LOCALIZERS.get(name).presets}
    assert sorted(owners) == PRESETS.names()
    assert owners["fsn_literal"] == "fsn" and owners["sfnet_code"] == "sfnet" and owners["wfsn"] == "wfsn"
    assert all(PRESETS.get(p) is LOCALIZERS.get(m).presets[p] for p, m in owners.items())


def test_the_evaluation_protocol_is_the_recipe_s_object():
    fsn = PRESETS.get("fsn")
    assert fsn.protocol == NmsPerTiou(-0.1) and PRESETS.get("sfnet").protocol is STANDARD
    groupings = fsn.protocol.groupings(fsn, [0.1, 0.5])
    assert [(round(p.nms_tiou, 9), t) for p, t in groupings] == [(1e-9, (0.1,)), (0.4, (0.5,))]
    assert all(p.nms_tiou_offset is None for p, _ in groupings)
    assert STANDARD.groupings(fsn, [0.1, 0.5]) == [(fsn, (0.1, 0.5))]
    assert "-0.1" in fsn.protocol.note(fsn) and STANDARD.note(fsn) is None


def _config(model: str, labels: dict, params: dict | None = None, features: str = "feats"):
    return config_from_dict(ExperimentConfig, {"data": {"features": features, "labels": labels},
                                               "model": {"name": model, "params": params or {}}}, "run.yaml")


def test_label_needs_are_checked_at_load_in_one_line():
    with pytest.raises(ConfigError) as e:
        _config("fsn", {"boundaries": True})
    assert str(e.value) == ("run.yaml: data.labels: model 'fsn' needs data.labels.frame_targets (Eq. 4 is a "
                            "per-frame loss (frame_targets needs boundaries))")
    _config("fsn", {"boundaries": True, "frame_targets": True})
    with pytest.raises(ConfigError, match="needs data.labels.action_clicks or data.labels.segments or "
                                          "data.labels.boundaries"):
        _config("sfnet", {})
    _config("sfnet", {"segments": {"source": "simulated"}})
    _config("sfnet", {}, {"frame_loss": False, "mining": {"enabled": False}})  # the need follows the config
    with pytest.raises(ConfigError, match="L_sep .separation. contrasts the background-clicked snippets"):
        _config("backtal", {"action_clicks": {"source": "uniform"}})
    _config("sfnet", {}, features="")  # no features yet: a template, checked when they are given


def test_a_taken_name_or_preset_is_refused_and_registers_nothing():
    with pytest.raises(KeyError, match="already registered"):
        register_method("fsn", Method(FSNConfig, "x:y"))
    with pytest.raises(KeyError, match="preset.s. sfnet already registered"):
        register_method("another", Method(FSNConfig, "x:y", presets={"sfnet": PostprocessConfig()}))
    assert "another" not in LOCALIZERS
    with pytest.raises(ValueError, match="label kinds among"):
        LabelNeed(("clicks",), "a typo in a kind")


def test_a_method_s_default_preset_is_its_first_unless_named():
    post = PostprocessConfig()
    assert Method(dict, lambda **kw: None, presets={"a": post, "b": post}).preset == "a"
    assert Method(dict, lambda **kw: None, presets={"a": post, "b": post}, default_preset="b").preset == "b"
    assert Method(dict, lambda **kw: None).preset is None
    with pytest.raises(ValueError, match="default_preset 'c' is not one of the method's presets"):
        Method(dict, lambda **kw: None, presets={"a": post}, default_preset="c")
