"""Analysis over many runs: loading them as a table (``runs``), paired statistics (``stats``), the report (``report``)."""
