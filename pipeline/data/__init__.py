"""Data: the feature cache and its contract, annotations and cheap labels, supervision, datasets, sampling."""
