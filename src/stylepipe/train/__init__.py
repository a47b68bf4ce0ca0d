"""Training machinery every method shares: the loop, checkpoints, schedules, torchrun and stage plumbing."""
