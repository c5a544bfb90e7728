"""Saving exported files without ever writing over someone's file or through a symlink.

The console and ``storybot export`` both save exports into folders people keep other things in,
and two stories often share a title. So a file is only ever created exclusively (an existing
file or symlink under that name makes the attempt fail, it is never opened), and replacing one
is an explicit choice that swaps the directory entry itself (a symlink is replaced, its target
is left alone).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# O_EXCL already refuses any existing name, symlinks included (POSIX: "regardless of the contents
# of the symbolic link"); O_NOFOLLOW says so again for file systems that get O_EXCL wrong.
# Where there is no O_NOFOLLOW (Windows), O_EXCL alone does it.
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_exclusive(path: str, flags: int) -> int:
    return os.open(path, flags | _NO_FOLLOW, 0o666)


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``; ``FileExistsError`` if anything (even a symlink) is there.

    A write that fails half-way (a full disk) removes the file it created rather than leave a
    truncated export behind; the data is synced so that :func:`replace` never swaps an
    unwritten file over a good one.
    """
    # The open stays outside the try (so not `with open(...)`): a failed open created nothing,
    # and unlinking then would remove whatever was already at ``path``.
    file = open(path, "xb", opener=_open_exclusive)  # noqa: SIM115  # closed by `with file:` below
    try:
        with file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def save_in(folder: Path, filename: str, data: bytes) -> Path:
    """Write ``data`` into ``folder`` under ``filename``, or the next free name; return the path.

    ``story.md`` is taken -> ``story-2.md``, then ``story-3.md``; the number goes before every
    suffix (``story-2.ao3.html``). Only the last part of ``filename`` counts, so a name can
    never leave ``folder``.
    """
    name = Path(filename).name or "story"
    stem, dot, suffix = name.partition(".")
    number = 1
    while True:
        path = folder / (name if number == 1 else f"{stem}-{number}{dot}{suffix}")
        try:
            write_new(path, data)
            return path
        except FileExistsError:
            number += 1


def replace(path: Path, data: bytes) -> Path:
    """Put ``data`` at ``path`` atomically, replacing whatever is there; return ``path``.

    The data goes to a hidden temporary file in the same folder (so the rename cannot cross file
    systems), which is then renamed over ``path``: readers see the old file or the new one, never
    half of it, and a symlink at ``path`` is itself replaced instead of its target written.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    write_new(temporary, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
