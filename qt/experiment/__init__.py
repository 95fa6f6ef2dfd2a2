"""One experiment from a config: composing and validating it, building its objects, running it, exporting its network."""
