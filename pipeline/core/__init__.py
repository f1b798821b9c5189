"""The bottom layer: geometry (the one seconds <-> snippet mapping), atomic files, registries, typed configs."""
