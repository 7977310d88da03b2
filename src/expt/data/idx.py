"""Reader for the IDX format of (Fashion-)MNIST, gzipped or raw."""

import gzip
import zlib
from pathlib import Path

import torch

from ..errors import DataError

UBYTE = 0x08  # the only element type (Fashion-)MNIST uses


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file of unsigned bytes into a uint8 tensor of its stored shape."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({e}); delete it and fetch the file again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != UBYTE:
        raise DataError(f"{path}: not an IDX file of bytes (magic number {raw[:4].hex() or 'missing'}); "
                        "expected the official Fashion-MNIST files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header; delete it and fetch the file again")
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    count = 1
    for d in shape:
        count *= d
    if len(raw) - header != count:
        raise DataError(f"{path}: truncated or padded IDX data ({len(raw) - header} bytes, shape {shape} "
                        f"needs {count}); delete it and fetch the file again")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=header, count=count).reshape(shape)
