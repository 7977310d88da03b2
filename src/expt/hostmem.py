"""CPU runs: let glibc keep freed memory for reuse instead of handing it back to the kernel.

By default glibc serves every allocation above its mmap threshold (128 KiB, adapting up to
32 MiB) with a fresh mmap and returns it with munmap on free. A CPU training step allocates and
frees activations of tens of MiB in every layer, so each step page-faults its way through memory
it has just given back: in one epoch on a 2-core CPU, 99 of 363 CPU seconds went to the kernel.
With malloc's own mmap off (M_MMAP_MAX=0) and the heap never trimmed, freed blocks are reused:
35% less time per epoch in `scripts/bench_malloc.py` (docs/BENCHMARKS.md). The price is about
1 GB more peak resident memory, which the process keeps until it exits.

It changes nothing about results, only speed. EXPT_MALLOC=system leaves malloc as it is. Other
C libraries (musl, macOS) and allocators preloaded with LD_PRELOAD are left alone.
"""

import ctypes
import os

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Apply the setting once per process; True when glibc accepted it."""
    global _applied
    if _applied or os.environ.get("EXPT_MALLOC", "keep") == "system":
        return _applied
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _applied
