"""Detections: what post-processing produces and evaluation consumes. Times in seconds."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detection:
    video: str
    label: str
    start_s: float
    end_s: float
    score: float
