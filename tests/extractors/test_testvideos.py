"""The one PyAV video writer and the demo videos made with it."""
import av
import numpy as np

from clicktal.extractors.testvideos import write_demo_videos
from clicktal.pipeline.data.annotations import load_ground_truth


def test_demo_videos_decode_with_their_ground_truth(tmp_path):
    gt = write_demo_videos(tmp_path, n_videos=2, duration_s=3.0, size=(160, 120))
    loaded = load_ground_truth(tmp_path / "groundtruth.json")
    assert sorted(loaded.videos) == ["demo_00", "demo_01"] and len(loaded.videos["demo_00"].segments) == 2
    with av.open(str(tmp_path / "demo_00.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 75 and frames[0].shape == (120, 160, 3)
    seg = gt["database"]["demo_00"]["annotations"][0]["segment"]
    # the square moves inside an instance and rests before it
    first = int(np.ceil(seg[0] * 25))
    moving = np.abs(frames[first].astype(int) - frames[first + 10]).mean()
    resting = np.abs(frames[0].astype(int) - frames[5]).mean()
    assert moving > 5 * max(resting, 0.1)
