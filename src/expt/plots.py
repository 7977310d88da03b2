"""PNG plots written atomically, without a display (matplotlib's Agg backend)."""

from contextlib import contextmanager
from pathlib import Path

from .checkpoint import atomic_write


@contextmanager
def png(path: Path, figsize: tuple[float, float] = (6, 4), ncols: int = 1, nrows: int = 1):
    """Yield the axes of a new figure (a tuple of nrows x ncols of them, row by row, when more than
    one); on leaving, save it to `path` as a PNG and close it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(nrows, ncols, figsize=figsize)
    ax = tuple(ax.flat) if nrows * ncols > 1 else ax
    try:
        yield ax
        fig.tight_layout()
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
