"""PNG plots written atomically, without a display (matplotlib's Agg backend)."""

import math
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


def labelled_images(path: Path, images, names: list[str], cols: int = 8) -> None:
    """Images (N, C, H, W) in 0..1, each under its caption (lines split by newlines), `cols` a row."""
    cols = min(cols, len(images))
    rows, lines = math.ceil(len(images) / cols), max(name.count("\n") + 1 for name in names)
    with png(path, figsize=(1.6 * cols, (1.62 + 0.18 * lines) * rows), ncols=cols, nrows=rows) as cells:
        cells = cells if isinstance(cells, tuple) else (cells,)
        for cell, image, name in zip(cells, images, names):
            pixels = image.clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            cell.imshow(pixels[..., 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0, vmax=1)
            cell.set_title(name, fontsize=8)
        for cell in cells:
            cell.axis("off")
