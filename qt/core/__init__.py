"""The model: a circuit (``quantum``), a mapping model, the target networks, the equal-budget generators, and the learners that combine them."""
