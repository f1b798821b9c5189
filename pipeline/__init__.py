"""clicktal's pipeline, split by layer; a layer imports only the layers below it (tests/test_layers.py holds it).

* ``core``: geometry (seconds <-> snippets), atomic files, registries, typed configs;
* ``data``: the feature cache, annotations and cheap labels, supervision, datasets and the temporal sampling stage;
* ``postprocess``: frame scores -> detections (grouping, scoring, NMS, paper presets);
* ``evaluation``: detection mAP (equal to the official ActivityNet code) and frame-level mAP;
* ``runs``: the training engine, inference and experiments: the only layer that imports ``clicktal.models``.
"""
