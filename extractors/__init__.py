"""Feature extraction: decoding, TV-L1 optical flow, two-stream I3D and TSN, written to the feature cache.

Entry points: :func:`extract_folder` (what ``tools/extract_features.py`` runs), :func:`extract_video` (the
per-video task that joblib, Dask or Ray run), :func:`compute_features` (arrays + metadata, no cache).
"""
from .decode import Video, VideoError, VideoInfo, find_videos
from .extract import ExtractionConfig, VideoResult, compute_features, extract_video
from .flowio import read_saved_flow
from .runner import Summary, extract_folder, plan_videos
from .weights import WeightsError

__all__ = [
    "ExtractionConfig",
    "Summary",
    "Video",
    "VideoError",
    "VideoInfo",
    "VideoResult",
    "WeightsError",
    "compute_features",
    "extract_folder",
    "extract_video",
    "find_videos",
    "plan_videos",
    "read_saved_flow",
]
