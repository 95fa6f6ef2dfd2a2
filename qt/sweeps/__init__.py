"""Sweeps: study storage and summaries for grids and Optuna searches (``study``), and a trial's side of pruning (``pruning``)."""
