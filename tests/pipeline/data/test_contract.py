"""The feature contract: recorded from the features, and features that break it refused with the field named."""
import numpy as np
import pytest

from clicktal.pipeline.core.geometry import FeatureGeometry
from clicktal.pipeline.data.cache import CacheSource, FeatureCache, FeatureMeta
from clicktal.pipeline.data.contract import ContractError, FeatureContract, source_contract

STREAMS = {"rgb": (0, 4), "flow": (4, 8)}


def write(root, vid, geometry=FeatureGeometry(25, 16, 16), extractor="i3d", sha="abc", streams=STREAMS):
    dim = max(b for _, b in streams.values())
    meta = FeatureMeta(geometry, streams, extractor, {"rgb": sha, "flow": sha})
    FeatureCache(root).write(vid, np.zeros((5, dim), np.float32), meta)


def test_round_trip_and_equal_contracts_pass(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b")
    c = source_contract(CacheSource(tmp_path))
    assert FeatureContract.from_dict(c.to_dict()) == c
    assert c.dim == 8 and c.geometry.stride == 16


@pytest.mark.parametrize("change, field", [
    ({"geometry": FeatureGeometry(30, 16, 16)}, "geometry.fps"),
    ({"geometry": FeatureGeometry(25, 16, 8)}, "geometry.stride"),
    ({"geometry": FeatureGeometry(25, 32, 16)}, "geometry.window"),
    ({"extractor": "tsn"}, "extractor"),
    ({"sha": "other"}, "weights_sha256"),
    ({"streams": {"rgb": (0, 8)}}, "streams"),
])
def test_a_video_that_breaks_the_contract_is_named_with_the_field(tmp_path, change, field):
    write(tmp_path, "a")
    write(tmp_path, "z_odd", **change)
    with pytest.raises(ContractError, match=rf"video z_odd: .*{field}"):
        source_contract(CacheSource(tmp_path))


def test_fractional_geometry_round_trips():
    g = FeatureGeometry(25, 16, 16).regrid(3.0, 1499 / 749)
    assert FeatureGeometry.from_dict(g.to_dict()) == g
    assert FeatureGeometry(25, 16, 16).to_dict() == {"fps": 25, "window": 16, "stride": 16}
