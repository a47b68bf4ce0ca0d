"""Johnson, Alahi & Fei-Fei's per-style feed-forward network: model, training stage and export."""
