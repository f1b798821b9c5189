"""Post-processing: frame scores -> scored, labelled segments (numpy only)."""
