"""Evaluation: detection mAP equal to the official ActivityNet code, and frame-level mAP (numpy only)."""
