import math

import numpy as np
import pytest

from clicktal.pipeline.core.geometry import FeatureGeometry, interpolate

G = FeatureGeometry(fps=25, window=16, stride=16)


@pytest.mark.parametrize("duration", [0.01, 0.64, 0.65, 18.16, 14.05, 226.6333])
def test_snippet_count_is_ceil_of_duration_in_snippets(duration):
    assert G.snippet_count(duration) == max(1, math.ceil(duration * 25 / 16 - 1e-9))


def test_exact_multiple_does_not_gain_a_snippet_from_float_error():
    assert G.snippet_count(0.64 * 3) == 3


def test_index_and_seconds_round_trip():
    idx = np.arange(100)
    assert np.array_equal(G.index_of(G.centre_s(idx)), idx)
    assert np.array_equal(G.index_of(G.start_s(idx)), idx)
    assert G.index_of(0.6399) == 0 and G.index_of(0.64) == 1


def test_index_is_clipped_to_the_video():
    assert G.index_of(1000.0, num_snippets=10) == 9
    assert G.index_of(-1.0, num_snippets=10) == 0


def test_centre_uses_window_and_span_uses_stride():
    g = FeatureGeometry(fps=30, window=16, stride=8)
    assert g.centre_s(0) == pytest.approx(8 / 30)
    assert g.span_to_seconds(2, 5) == pytest.approx((16 / 30, 40 / 30))
    assert g.segment_to_span(0.3, 0.5) == (1, 2)


def test_dict_round_trip_and_validation():
    assert FeatureGeometry.from_dict(G.to_dict()) == G
    with pytest.raises(ValueError):
        FeatureGeometry(fps=0)


def test_interpolate_places_each_snippet_on_its_centre_and_clamps_at_the_valid_ends():
    g = FeatureGeometry(fps=25, window=16, stride=16)
    values = np.array([[0.0], [16.0], [32.0], [99.0]])  # the last row is padding
    frames = g.frames()
    out = interpolate(values, g, frames, 3 * 16, valid=3)[:, 0]
    assert np.isclose(out[8], 0.5)  # frame 8's centre is half a frame past snippet 0's: 1/32 of the way to 16
    assert np.allclose(out[:8], 0.0) and np.isclose(out[8 + 16], 16.5) and np.allclose(out[8 + 32:], 32.0)
    assert out.max() < 99  # padding never leaks in
    # overlapping snippets (window > stride): positions follow the centres, not the starts
    wide = FeatureGeometry(fps=25, window=32, stride=16)
    assert np.allclose(wide.positions_of(wide.frames(), 3), (np.arange(3) + 0.5 - 16) / 16)
    with pytest.raises(ValueError, match="different fps"):
        g.positions_of(FeatureGeometry(fps=30), 2)


def test_span_inside_counts_whole_spans_and_follows_the_origin():
    g = FeatureGeometry(fps=25, window=16, stride=16)  # 0.64 s per snippet
    assert g.span_inside(0.64, 3 * 0.64) == (1, 3)  # spans 1 and 2, exactly
    assert g.span_inside(0.65, 3 * 0.64 - 0.01) == (2, 2)  # spans 1 and 2 both stick out: empty
    assert g.span_inside(0.1, 0.5) == (1, 0)  # shorter than a snippet: empty
    crop = g.regrid(10, 1)  # a crop starting at native snippet 10: its element 0 starts at 6.4 s
    assert crop.span_inside(6.4, 6.4 + 2 * 0.64) == (0, 2)
