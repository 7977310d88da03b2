"""PNG plots written atomically, without a display (matplotlib's Agg backend)."""

from contextlib import contextmanager
from pathlib import Path

from .checkpoint import atomic_write


@contextmanager
def png(path: Path, figsize: tuple[float, float] = (6, 4)):
    """Yield the axes of a new figure; on leaving, save it to `path` as a PNG and close it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=figsize)
    try:
        yield ax
        fig.tight_layout()
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
