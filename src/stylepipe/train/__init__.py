"""Training: the shared loop, checkpoints, schedules, DDP, and the AdaIN and Johnson stages."""
