"""Runs: the training engine, inference and experiments; the only layer that imports ``clicktal.models``."""
