"""Thin command-line front ends (``python tools/<name>.py``), importable as ``clicktal.tools`` for their
shared table printing and the demo's stages."""
