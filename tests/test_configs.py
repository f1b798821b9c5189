"""Every shipped config loads (unknown keys and bad values are refused at load time) and builds its model; every
fragment under configs/_base_ is inherited by one of them; the BackTAL code preset is the authors' network
(VividLe/BackTAL lib/models/network.py)."""
from pathlib import Path

import pytest
import torch
import yaml

from clicktal.models import build_localizer
from clicktal.pipeline.core.config import _read_yaml, load_config
from clicktal.pipeline.runs.schema import ExperimentConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_builds(path):
    cfg = load_config(ExperimentConfig, path)
    assert cfg.name == path.stem
    with torch.device("meta"):
        build_localizer(cfg.model.name, cfg.model.params, input_dim=64, num_classes=5,
                        streams={"rgb": (0, 32), "flow": (32, 64)})  # the two-stream layout of every extractor


def test_every_fragment_is_inherited_and_none_is_taken_for_a_runnable_config():
    fragments = sorted((REPO / "configs" / "_base_").glob("*.yaml"))
    assert fragments and not set(fragments) & set(CONFIGS)
    read = {f for path in CONFIGS for f in _read_yaml(path)[1]}
    assert [f.name for f in fragments if f not in read] == []
    assert all(yaml.safe_load(f.read_text()).get("name") is None for f in fragments)  # the child names the run


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_backtal_code_preset_is_the_authors_network_and_table_10_leaves_out_the_masked_convs():
    cfg = load_config(ExperimentConfig, REPO / "configs" / "backtal_code_thumos14.yaml")
    with torch.device("meta"):
        model, _ = build_localizer("backtal", cfg.model.params, input_dim=2048, num_classes=20)
    # network.py: FilterModule 2048*512+512 + 512+1; BaseModule two bias-free 2048x2048x3 convs; classifier
    # 2048*21; EmbeddingModule 2048*512*3+512 + 512*32*3+32
    filter_, masked, classifier = 2048 * 512 + 512 + 512 + 1, 2 * 2048 * 2048 * 3, 2048 * 21
    embedding = 2048 * 512 * 3 + 512 + 512 * 32 * 3 + 32
    assert _params(model) == filter_ + masked + classifier + embedding
    without = _params(model) - _params(model.layer1) - _params(model.layer2)
    assert round(without / 1e6, 2) == 4.29  # Table 10's "Para." for BackTAL
