"""Errors that reach the user as one clear line (no traceback)."""


class QTError(Exception):
    """A problem the user can fix; the message says what to do."""


class ConfigError(QTError):
    """An impossible or inconsistent configuration value."""


class DataError(QTError):
    """Dataset files missing or unreadable."""


class RunDirError(QTError):
    """The run directory holds results that would be overwritten or mixed up."""


#: what to do about a RunDirError
ANOTHER_RUN_DIR = "choose another hydra.run.dir (hydra.sweep.dir for a multirun), or delete that folder to start over"
