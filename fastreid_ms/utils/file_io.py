"""Atomic file writing: a crash never leaves a half-written checkpoint, export or log file."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(final_path: str):
    """Yield a temporary path in the same folder; rename it onto ``final_path`` on success.

    The writer fills the temporary file; only when the ``with`` block ends without an
    exception is it fsync'ed and renamed (an atomic replace on POSIX). On failure the
    temporary file is removed and ``final_path`` keeps its previous content.
    """
    final_path = os.path.abspath(final_path)
    folder = os.path.dirname(final_path)
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(final_path)
    fd, tmp_path = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp_path
        # mkstemp makes 0600 files and MindSpore writes checkpoints / exports 0400: give the
        # result the mode of a normally created file (0666 less the umask).
        os.chmod(tmp_path, default_file_mode())
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, final_path)
        _fsync_dir(folder)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
