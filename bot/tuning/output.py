"""The adapter's folder appears whole or not at all.

Everything is written into a hidden folder beside the one asked for (the same parent, so the
final rename is atomic) and renamed into place at the end. Ctrl-C or any error on the way
removes the hidden folder: nothing half-written is left where a bot could load it from.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.results import UserError


def check_new_folder(path: Path) -> None:
    """Refuse (one line) a path that holds anything: an adapter is never written over."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UserError(f"{path} exists and is not a folder; --out names a new (or empty) folder.")
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"{path} is not empty; --out names a new (or empty) folder, nothing is written over.")


def partial_name(path: Path) -> str:
    """The hidden folder's name beside ``path`` while it is being written."""
    return f".{path.name}.{os.getpid()}.partial"


@contextmanager
def new_folder(path: Path) -> Iterator[Path]:
    """A hidden folder to write into; renamed to ``path`` when the block ends without an error,
    removed when it raises (``KeyboardInterrupt`` included), the exception passing on."""
    check_new_folder(path)
    path = path.absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.parent / partial_name(path)
        shutil.rmtree(partial, ignore_errors=True)  # a leftover of this pid's: never ours now
        partial.mkdir()
    except OSError as error:
        raise UserError(f"cannot write into {path.parent}: {error.strerror or error}.") from None
    try:
        yield partial
        try:
            # Replaces an empty folder at ``path``, never a full one (rename refuses).
            partial.rename(path)
        except OSError as error:
            raise UserError(f"cannot put the adapter at {path}: {error.strerror or error}.") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
