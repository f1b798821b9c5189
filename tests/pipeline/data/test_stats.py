from clicktal.pipeline.data.annotations import ActionClick, GroundTruth, Segment, VideoAnnotation, load_ground_truth
from clicktal.pipeline.data.annotations import read_action_clicks
from clicktal.pipeline.data.stats import action_click_stats, background_click_stats
from clicktal.tools.tables import format_table

GT = GroundTruth({
    "v": VideoAnnotation("v", "train", 100.0, (Segment(10, 20, "a"), Segment(30, 40, "b"))),
    "w": VideoAnnotation("w", "test", 50.0, (Segment(1, 2, "a"),)),
})


def test_action_click_stats_count_outside_and_hits():
    clicks = {"v": [ActionClick(15, "a"), ActionClick(35, "a"), ActionClick(50, "b")]}
    s = action_click_stats(GT, clicks, "A1")
    # instances counted on the clicked subset only; 35 s is inside an instance of the wrong class
    assert (s.clicks, s.instances, s.outside, s.instances_hit) == (3, 2, 2, 1)


def test_background_click_stats_count_clicks_inside_actions():
    s = background_click_stats(GT, {"v": [5.0, 12.0, 40.0, 70.0]}, "A1")
    assert (s.clicks, s.outside) == (4, 2) and s.outside_fraction == 0.5


def test_real_thumos_instances_match_sfnet_table1(benchkit):
    gt = load_ground_truth(benchkit / "thumos14/groundtruth.json")
    clicks, _ = read_action_clicks(benchkit / "thumos14/action_clicks_A1.txt", gt)
    assert action_click_stats(gt, clicks, "A1").instances == 3007  # SF-Net Table 1, THUMOS14 total segments


def test_format_table():
    text = format_table(["name", "x"], [["a", 1.234], ["bb", 2]], title="T")
    assert text.splitlines() == ["T", "name     x", "----  ----", "a     1.23", "bb       2"]
