"""Training: the one loop (``loop.Trainer``) and its callbacks, evaluation, data, losses, LR schedules and trackers."""
