"""Data stages: embedded sample, aria2 downloads, safe archives, preprocessing, shards, datasets."""
