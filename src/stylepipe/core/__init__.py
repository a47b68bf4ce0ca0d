"""Core: io, paths, errors, config, profiles, media, runtime, CPUs, tiling, viz, tracking and the code digest."""
