"""Small file helpers: everything the workbench writes lands atomically (temp file + rename)."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

try:  # POSIX: a writer holds an advisory lock on its temp file, so a cleaner can tell a live one from a stale one
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash half-way leaves the old file (or none), never a truncated one. The temp files a
    killed writer left beside ``path`` are removed here, on the next write of the same file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until this write ends: marks the temp file as alive
        remove_stale_temps(path, keep=tmp)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode(0o666))  # mkstemp makes 0600: the file gets what open() would give it
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


def process_umask() -> int:
    """The umask, read without changing it (``os.umask`` can only be read by setting it, which races with
    other threads creating files); from /proc on Linux, else by the set-and-restore fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def default_mode(full: int) -> int:
    """``full`` (0o666 for a file, 0o777 for a folder) less the process umask: what ``open``/``mkdir`` give."""
    return full & ~process_umask()


def remove_stale_temps(path: str | Path, keep: Path | None = None) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files of ``path`` whose writer is gone (nobody holds their lock)."""
    path = Path(path)
    removed = []
    for found in glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*.tmp")):
        candidate = Path(found)
        if candidate == keep:
            continue
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue  # already gone
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
        except OSError:
            pass  # a live writer holds it
        finally:
            os.close(fd)
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def palette_bytes(colors: Sequence[Sequence[int]] | np.ndarray) -> list[int]:
    """A 768-entry PIL palette: the class colors, then white for ignore (255) and black elsewhere."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    pal[: len(colors)] = colors
    pal[255] = 255
    return pal.ravel().tolist()


def save_index_png(path: str | Path, mask: np.ndarray, colors: Sequence[Sequence[int]] | np.ndarray) -> None:
    """Save an ``(H, W)`` index mask as a palette PNG (values are class indices; colors for viewing)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError(
            f"index mask must be (H, W) with values 0..255, got {mask.shape} in [{mask.min()}, {mask.max()}]"
        )
    img = Image.fromarray(mask.astype(np.uint8))  # mode L; putpalette turns it into P
    img.putpalette(palette_bytes(colors))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path.lock`` (created beside it): read-modify-write of one results file
    by several processes (POSIX; elsewhere no lock is taken)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
