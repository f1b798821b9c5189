"""What SF-Net keeps in its state: labels kept by online mining come from training steps only (the engine's
held-out validation pass leaves them alone), and state dicts written by the earlier monolithic module load, with the
kept labels they held as extra state."""
import numpy as np
import torch

from clicktal.models import build_localizer
from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.datasets import VideoItem, collate
from clicktal.pipeline.runs.engine import validation_losses

STREAMS = {"rgb": (0, 16), "flow": (16, 32)}


def block_items(prefix: str, seed: int, n: int = 4, T: int = 60, C: int = 3) -> list[VideoItem]:
    """Videos of constant-feature action blocks (14 snippets) with one click at each block's centre: mining finds
    the block's neighbours of every click as soon as the classifier separates the prototypes."""
    rng = np.random.default_rng(0)
    protos = rng.normal(0, 1, (C, 32)).astype(np.float32)
    rng = np.random.default_rng(seed)
    items = []
    for b in range(n):
        feats = rng.normal(0, 0.3, (T, 32)).astype(np.float32)
        targets = np.zeros((T, C), np.float32)
        for start, c in ((3, b % C), (24, (b + 1) % C), (44, (b + 2) % C)):
            feats[start:start + 14] = protos[c]
            targets[start + 7, c] = 1
        items.append(VideoItem(f"{prefix}{b}", feats, geometry=FeatureGeometry(), targets={
            "video_labels": (targets.sum(0) > 0) * np.float32(1.0), "actions": targets,
            "anchors": targets.sum(1) > 0, "background": np.zeros(T, bool)}))
    return items


def test_a_held_out_validation_pass_leaves_the_kept_labels_unchanged():
    torch.manual_seed(0)
    model, _ = build_localizer("sfnet", {"dropout": 0.0, "mining": {"start_iteration": 0, "keep": True}},
                               input_dim=32, num_classes=3, streams=STREAMS)
    train = collate(block_items("train", seed=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    count = lambda: sum(len(v) for v in model.miner.kept.values())
    grew = []
    for it in range(30):  # until the classifier separates the blocks and mining keeps labels
        before = count()
        output = model(train.features, train.mask)
        terms = model.losses(output, train, iteration=it)
        assert count() == before  # the losses keep nothing, in training either ...
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        model.after_step(output, train, iteration=it)  # ... the step does (the trainer calls it after each step)
        grew.append(count() > before)
    assert any(grew)
    kept = {k: [list(p) for p in v] for k, v in model.miner.kept.items()}
    assert kept and all(k.startswith("train") for k in kept)
    state = model.training_state()
    assert "_extra_state" not in model.state_dict()  # training state, not weights

    val = validation_losses(model, block_items("heldout", seed=2), iteration=30)
    assert val["n_mined"] > 0  # the held-out pass does mine (for its own loss) ...
    assert model.miner.kept == kept  # ... but keeps nothing
    assert model.training_state() == state


# the monolithic module's keys (models/sfnet.py before commit c22e4d5) -> today's
OLD_KEYS = {f"streams.{s}.{old}": f"streams.{s}.{new}" for s in STREAMS
            for old, new in [(f"cls.{i}.{p}", f"cls.{i}.{p}") for i in (0, 2) for p in ("weight", "bias")]
            + [(f"classifier.{p}", f"classifier.{p}") for p in ("weight", "bias")]
            + [(f"conv{i}.{p}", f"temporal.conv{i}.{p}") for i in (1, 2) for p in ("weight", "bias")]
            + [(f"action.{p}", f"action.{p}") for p in ("weight", "bias")]}
OLD_KEYS.update({f"{m}.{s}": f"{m}.{s}" for m in ("class_mul", "act_mul") for s in STREAMS})


def test_a_state_dict_of_the_monolithic_module_loads_strictly_with_the_same_outputs_and_its_kept_labels():
    torch.manual_seed(0)
    new, _ = build_localizer("sfnet", {}, input_dim=32, num_classes=3, streams=STREAMS)
    current = new.state_dict()
    old = {k: current[v].clone() for k, v in OLD_KEYS.items()}
    old["_extra_state"] = {"mined": {"v": [[4, 1]]}}  # the kept labels, in the state dict before the miner
    assert set(OLD_KEYS.values()) == set(current)  # the table above covers every key
    torch.manual_seed(1)
    loaded, _ = build_localizer("sfnet", {}, input_dim=32, num_classes=3, streams=STREAMS)
    loaded.load_state_dict(old)  # strict
    assert loaded.miner.kept == {"v": [[4, 1]]} and loaded.training_state() == {"mined": {"v": [[4, 1]]}}
    x, mask = torch.randn(2, 20, 32), torch.ones(2, 20, dtype=torch.bool)
    new.eval(), loaded.eval()
    a, b = new(x, mask), loaded(x, mask)
    assert torch.equal(a.class_scores, b.class_scores) and torch.equal(a.actionness, b.actionness)
