"""Measurement tools: the benchmark (``bench``) and the initialisation probe (``probe_init``)."""
