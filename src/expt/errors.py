"""User-facing errors: one clear line and exit code 2, never a traceback."""


class ExptError(Exception):
    """A mistake the user can fix (bad config, missing or malformed data, wrong checkpoint)."""

    exit_code = 2
    every_rank = False  # under torchrun rank 0 alone says it (every rank meets the same mistake)


class DataError(ExptError):
    """The dataset is missing, incomplete or malformed."""


class ConfigError(ExptError):
    """An option or value in the composed config is unknown or has the wrong type."""


class CheckpointError(ExptError):
    """A checkpoint is missing, corrupt, or does not fit the run."""


def first_line(error: BaseException) -> str:
    """An exception's first line (its type's name when it has no message), for one-line errors."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class Unfinished(ExptError):
    """A command that ran and did not finish its work: a run interrupted (exit 130, or 143 after
    SIGTERM) or diverged, a sweep with failed jobs (exit 1). The message says what was kept."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
