"""The feature normalisation stage: statistics, their record, and one application per source."""
import numpy as np
import pytest

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.cache import FeatureMeta, FeatureSource
from clicktal.pipeline.data.normalize import Normalization, NormalizedSource, fit_normalization, normalized


class Arrays(FeatureSource):
    def __init__(self, arrays):
        self.arrays = arrays
        self.meta_ = FeatureMeta(FeatureGeometry(), {"rgb": (0, 3)}, extractor="test")

    def ids(self):
        return sorted(self.arrays)

    def meta(self, video_id):
        return self.meta_

    def load(self, video_id):
        return self.arrays[video_id], self.meta_


def source():
    rng = np.random.default_rng(0)
    a = rng.normal([5.0, -2.0, 7.0], [3.0, 0.5, 0.0], size=(40, 3)).astype(np.float32)
    b = rng.normal([4.0, -1.0, 7.0], [2.0, 0.5, 0.0], size=(25, 3)).astype(np.float32)
    return Arrays({"a": a, "b": b, "c": 100 + a})


def test_standardize_uses_every_snippet_of_the_given_videos_only():
    src = source()
    norm = fit_normalization(src, ["a", "b"], "standardize")
    both = np.concatenate([src.arrays["a"], src.arrays["b"]]).astype(np.float64)
    assert norm.videos == 2 and norm.snippets == 65
    assert np.allclose(norm.mean, both.mean(0)) and np.allclose(norm.std[:2], both.std(0)[:2])
    assert norm.std[2] == 1.0  # a constant dimension is centred, not blown up
    x = NormalizedSource(src, norm).load("a")[0]
    y = np.concatenate([x, NormalizedSource(src, norm).load("b")[0]])
    assert x.dtype == np.float32 and np.allclose(y.mean(0), 0, atol=1e-5) and np.allclose(y[:, :2].std(0), 1, atol=1e-4)
    assert fit_normalization(src, ["a"], "none").active is False


def test_the_record_round_trips_and_bad_records_are_refused():
    norm = fit_normalization(source(), ["a", "b"], "standardize")
    back = Normalization.from_dict(norm.to_dict())
    assert back.same_as(norm) and back.videos == 2 and back.snippets == 65
    assert Normalization.from_dict(None).kind == "none" and Normalization.from_dict({"kind": "none"}).kind == "none"
    for bad in ({"kind": "standardize", "mean": [0.0]}, {"kind": "standardize", "mean": [0.0], "std": [0.0]},
                {"kind": "whiten"}, {"kind": "standardize", "mean": [0.0, 1.0], "std": [1.0]}):
        with pytest.raises(ValueError, match="run_x: unreadable feature normalisation"):
            Normalization.from_dict(bad, "run_x")


def test_a_source_is_normalised_once_and_never_with_other_statistics():
    src = source()
    norm = fit_normalization(src, ["a", "b"], "standardize")
    once = normalized(src, norm)
    assert normalized(once, Normalization.from_dict(norm.to_dict())) is once  # the run's own stats: as it is
    assert normalized(src, Normalization()) is src
    with pytest.raises(ValueError, match="other statistics"):
        normalized(once, fit_normalization(src, ["a"], "standardize"))
    with pytest.raises(ValueError, match="video v: 5-d features, the run's normalisation is 3-d"):
        norm.apply(np.zeros((2, 5), np.float32), "video v")
