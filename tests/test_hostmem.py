"""On the CPU, expt has glibc keep freed memory in its heap instead of mmap/munmap per allocation."""

import ctypes
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from expt.runtime import resolve_device

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
resolve_device(sys.argv[1])
before = libc.mallinfo2().hblkhd
block = bytearray(64 << 20)  # far above glibc's mmap threshold
print(libc.mallinfo2().hblkhd - before)
"""


def glibc_with_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


def mmapped_bytes_for_64mib(device: str, malloc: str) -> int:
    env = {**os.environ, "EXPT_MALLOC": malloc}
    out = subprocess.run([sys.executable, "-c", PROBE, device], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not glibc_with_mallinfo2(), reason="needs glibc >= 2.33")
def test_cpu_runs_serve_large_blocks_from_the_reused_heap():
    assert mmapped_bytes_for_64mib("cpu", "keep") == 0
    assert mmapped_bytes_for_64mib("cpu", "system") >= 64 << 20  # glibc's default: a fresh mmap
