"""User-facing errors: one clear line and exit code 2, never a traceback."""


class ExptError(Exception):
    """A mistake the user can fix (bad config, missing or malformed data, wrong checkpoint)."""

    exit_code = 2


class DataError(ExptError):
    """The dataset is missing, incomplete or malformed."""


class ConfigError(ExptError):
    """An option or value in the composed config is unknown or has the wrong type."""


class CheckpointError(ExptError):
    """A checkpoint is missing, corrupt, or does not fit the run."""


def first_line(error: BaseException) -> str:
    """An exception's first line (its type's name when it has no message), for one-line errors."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
