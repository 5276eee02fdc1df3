"""How the process hands memory back: large buffers return to the system when freed.

Every password check (argon2id) takes ARGON2_MEMORY_COST_KIB (19 MiB) for a few milliseconds.
glibc's malloc serves such a block by mmap and unmaps it on free, but after the first free it
raises its mmap threshold to that size, so that later blocks come from the heap of the thread's
arena, which keeps them once freed: a worker with four threads then holds 60 MiB or more of
freed argon2 memory for good (measured by `python -m bench.soak`: about 200 MiB resident per
worker, against about 140 MiB with the threshold fixed). A fixed threshold (mallopt(3)) turns the
adjustment off; a block of 128 KiB or more is unmapped as soon as it is freed.
"""

import ctypes
import ctypes.util

# From glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def return_large_blocks_to_the_system() -> bool:
    """Fixes malloc's mmap threshold where the C library is glibc; True if it did. Forked
    processes (gunicorn's workers) inherit it."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc: its allocator manages on its own
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
