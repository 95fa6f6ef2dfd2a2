"""The one results schema every run writes and every tool reads (``schema``), the objectives runs are judged by (``objectives``), and the figures (``plots``)."""
