"""Handing freed memory back to the operating system."""
import ctypes
import functools

__all__ = ["release_freed_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):          # no C library to open by that name (Windows)
        return None


def release_freed_memory():
    """Returns the free pages of the C heap to the operating system (glibc's malloc_trim).

    Arrays of a few MB (a test loader's batches of features) live in the heap, and glibc keeps
    what they free for reuse, so the process's resident size stays as if they were still held.
    Call it after releasing many of them. Returns True where it ran, False where the C library
    has no malloc_trim (musl, macOS, Windows)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(ctypes.c_size_t(0))
    return True
