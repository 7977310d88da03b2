"""SIGTERM (`kill`, a scheduler ending a job) handled as Ctrl-C is: weights saved, the run
resumable, and exit code 143 instead of 130."""

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives."""


TERMINATED: list[int] = []  # set once SIGTERM arrived


def interrupted_code(error: BaseException | None = None) -> int:
    return 143 if isinstance(error, Terminated) or TERMINATED else 130


def interrupted_by() -> str:
    return "terminated (SIGTERM)" if TERMINATED else "interrupted"


def on_sigterm(signum, frame) -> None:
    TERMINATED.append(signum)
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated (a KeyboardInterrupt)."""
    before = signal.signal(signal.SIGTERM, on_sigterm)
    TERMINATED.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
